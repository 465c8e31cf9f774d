package replication

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// These functions work on a data directory alone, without an Instance or
// a configuration, so that a small process outside the daemon (the fence
// keeper) can use them when the daemon is dead or frozen.

// PostmasterPID returns the pid in dataDir's postmaster.pid when that
// process is alive, is a postgres process and works in dataDir; else 0.
func PostmasterPID(dataDir string) int {
	b, err := readDataFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	// A killed postmaster stays a zombie until its parent reaps it, which
	// some init processes do slowly: it is dead already.
	if isZombie(pid) {
		return 0
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err == nil && !strings.HasPrefix(strings.TrimSpace(string(comm)), "postgres") {
		return 0 // pid reused by something else
	}
	// Every postgres process works in its data directory: a pid reused
	// by another cluster's backend has another cwd.
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
		want, werr := filepath.EvalSymlinks(dataDir)
		if werr == nil && filepath.Clean(cwd) != want {
			return 0
		}
	}
	return pid
}

// MayTakeWrites reports whether the server of dataDir might accept
// writes: its postmaster is alive and the data directory is not a
// standby's (no standby.signal). A server being promoted counts as
// writable as soon as promotion removed standby.signal.
func MayTakeWrites(dataDir string) bool {
	if PostmasterPID(dataDir) == 0 {
		return false
	}
	_, err := os.Stat(filepath.Join(dataDir, standbySignal))
	return err != nil
}

// StopNow stops the server of dataDir at once, whatever state its
// processes are in: SIGQUIT (immediate shutdown: every backend exits
// without a checkpoint) and SIGCONT to the postmaster, so that a stopped
// (SIGSTOP) postmaster still acts on it; then, if any process of the
// server is still there after grace, SIGKILL to each of them (backends
// of a frozen or dead postmaster included). It returns nil once no
// process works in dataDir any more, within grace plus 5 s.
func StopNow(dataDir string, grace time.Duration) error {
	if pid := PostmasterPID(dataDir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if len(processesIn(dataDir)) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	killDeadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesIn(dataDir)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(killDeadline) {
			return fmt.Errorf("replication: %d postgres processes of %s survived SIGKILL: %v", len(pids), dataDir, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesIn lists live postgres processes whose working directory is
// dataDir (every postgres process chdirs there). Processes it cannot
// inspect, and zombies, are not listed.
func processesIn(dataDir string) []int {
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || cwd != want {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.HasPrefix(string(comm), "postgres") && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// PrepareRunDir creates the run directory (beside the data directory,
// owned by os_user) if it is missing, for files the daemon keeps there.
func (in *Instance) PrepareRunDir() error { return in.prepareRunDir() }
