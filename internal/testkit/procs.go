package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LeakBound is how long the leak check lets the processes of a test
// take to exit after its other cleanups ran. Postgres and etcd are gone
// by then; a fence keeper whose daemon was killed (or detached) guards
// its write permission to the end, at most ttl - margin after the last
// renewal (7.5 s with the default ttl of 10 s), and exits once no daemon
// has been connected for its linger (2 s, fence.KeeperConfig.Linger).
// The check returns as soon as nothing is left.
const LeakBound = 12 * time.Second

// leakBound is LeakBound, shortened by this package's own tests.
var leakBound = LeakBound

// Process is a live process the leak check attributes to a test.
type Process struct {
	PID     int
	Cmdline string
	Cwd     string
}

func (p Process) String() string {
	return fmt.Sprintf("pid %d %q (cwd %s)", p.PID, strings.ReplaceAll(p.Cmdline, "\x00", " "), p.Cwd)
}

// CheckNoLeaks fails the test when a process it started under one of
// dirs is still alive LeakBound after the test's other cleanups, and
// kills it so that it does not outlive the test either. A process
// belongs to dir when its working directory is dir or below it (every
// postgres process works in its data directory) or one of its arguments
// names a path there (postgres -D, etcd --data-dir, a fence keeper's
// data directory). Call it when the directory is made: the check runs
// after every cleanup registered later, those that stop the servers.
func CheckNoLeaks(t T, dirs ...string) {
	t.Cleanup(func() {
		for _, dir := range dirs {
			for _, p := range LeftoverProcesses(dir, leakBound) {
				t.Errorf("testkit: the test left a process behind under %s: %s (killed now)", dir, p)
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
	})
}

// LeftoverProcesses waits up to bound for the processes under dir to
// exit and returns those still alive then.
func LeftoverProcesses(dir string, bound time.Duration) []Process {
	var left []Process
	_ = Poll(context.Background(), bound, func() error {
		left = ProcessesUnder(dir)
		return Missing(len(left) == 0, "processes alive")
	})
	return left
}

// ProcessesUnder lists the live processes (not zombies, not this one)
// whose working directory is under dir or one of whose arguments names
// a path under dir.
func ProcessesUnder(dir string) []Process {
	if !filepath.IsAbs(dir) {
		return nil // a relative path names no test's directory
	}
	dir = filepath.Clean(dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		p, err := readProcess(pid)
		if err != nil {
			continue // gone meanwhile, a zombie, or not ours to read
		}
		if under(p.Cwd, dir) || namesPath(p.args(), dir) {
			out = append(out, p)
		}
	}
	return out
}

var errZombie = errors.New("zombie")

func readProcess(pid int) (Process, error) {
	base := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(base + "/stat")
	if err != nil {
		return Process{}, err
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold any character.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		if s := stat[i+2]; s == 'Z' || s == 'X' {
			return Process{}, errZombie
		}
	}
	cmd, err := os.ReadFile(base + "/cmdline")
	if err != nil {
		return Process{}, err
	}
	cwd, _ := os.Readlink(base + "/cwd") // unreadable for another user's process without root
	return Process{PID: pid, Cmdline: strings.TrimRight(string(cmd), "\x00"), Cwd: cwd}, nil
}

func (p Process) args() []string { return strings.Split(p.Cmdline, "\x00") }

// under reports whether path is dir or below it (a working directory
// that was removed reads "<path> (deleted)").
func under(path, dir string) bool {
	return path != "" && (path == dir || strings.HasPrefix(path, dir+"/") || strings.HasPrefix(path, dir+" "))
}

// namesPath reports whether an argument names dir or a path below it,
// alone or after an option's "=".
func namesPath(args []string, dir string) bool {
	for _, a := range args {
		for i := strings.Index(a, dir); i >= 0; {
			end := i + len(dir)
			if (i == 0 || a[i-1] == '=' || a[i-1] == ' ') && (end == len(a) || a[end] == '/' || a[end] == ' ') {
				return true
			}
			j := strings.Index(a[i+1:], dir)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return false
}
