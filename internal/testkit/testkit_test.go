package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a T that records failures instead of failing the test;
// Fatalf ends the goroutine as testing's does.
type recorder struct {
	mu       sync.Mutex
	fatal    string
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Name() string     { return "recorder" }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(f string, a ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(f, a...))
	r.mu.Unlock()
}
func (r *recorder) Fatalf(f string, a ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(f, a...)
	r.mu.Unlock()
	runtime.Goexit()
}

// run calls f as a test body on its own goroutine, then the cleanups.
func (r *recorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestEventually(t *testing.T) {
	n := 0
	var r recorder
	r.run(func() {
		Eventually(&r, 5*time.Second, "third call", func() error {
			n++
			return Missing(n >= 3, fmt.Sprintf("only %d calls", n))
		})
	})
	if r.fatal != "" || n != 3 {
		t.Fatalf("a condition that holds at the third call: %d calls, failure %q", n, r.fatal)
	}

	r = recorder{}
	start := time.Now()
	r.run(func() {
		Eventually(&r, 100*time.Millisecond, "replica streaming", func() error { return errors.New("receiver is stopped") })
		t.Error("Eventually returned after its bound")
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a 100ms bound took %s", took)
	}
	if want := "replica streaming: not reached after 100ms: receiver is stopped"; r.fatal != want {
		t.Fatalf("failure %q, want %q", r.fatal, want)
	}
}

func TestCtxEndsWithTheTest(t *testing.T) {
	var r recorder
	var ctx context.Context
	r.run(func() {
		ctx = Ctx(&r, time.Hour)
		if ctx.Err() != nil {
			t.Error("context ended at once")
		}
	})
	if ctx.Err() == nil {
		t.Error("context alive after the test")
	}
	if ctx := Ctx(t, time.Millisecond); ctx.Err() == nil {
		<-ctx.Done() // ends at its bound, before the test does
	}
}

func TestFreePortReservedAndUnique(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if lo, _ := portRange(); lo > 0 {
			if _, err := os.Stat(filepath.Join(PortDir, strconv.Itoa(p))); err != nil {
				t.Fatalf("port %d not reserved: %v", p, err)
			}
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
	if a := FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("FreeAddr %q", a)
	}
}

func TestFreePortReleasedAtCleanup(t *testing.T) {
	if lo, _ := portRange(); lo == 0 {
		t.Skip("no reservation files: the ephemeral port range leaves no room below it")
	}
	var r recorder
	var p int
	r.run(func() { p = FreePort(&r) })
	if _, err := os.Stat(filepath.Join(PortDir, strconv.Itoa(p))); !os.IsNotExist(err) {
		t.Fatalf("port %d still reserved after the cleanup: %v", p, err)
	}
}

// spawn starts argv in its own process group, killed at the end.
func spawn(t *testing.T, cwd string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = cwd
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

func pids(ps []Process) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	slices.Sort(out)
	return out
}

// TestCheckNoLeaksFails: a process working in the test's directory, or
// naming it in its arguments, that outlives the test fails it and is
// killed; one that exits within the bound does not; nor does a process
// of another directory.
func TestCheckNoLeaksFails(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	inDir := spawn(t, dir, "sleep", "60")
	byArg := spawn(t, "/", "/bin/sh", "-c", "sleep 60; true", filepath.Join(dir, "data"))
	spawn(t, other, "sleep", "60")
	quick := spawn(t, dir, "sleep", "0.3")

	got := pids(ProcessesUnder(dir))
	want := []int{inDir.Process.Pid, byArg.Process.Pid, quick.Process.Pid}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("processes under %s: %v, want %v", dir, got, want)
	}

	done := make(chan struct{})
	go func() { _ = quick.Wait(); close(done) }() // reap it as its parent would
	defer func(b time.Duration) { leakBound = b }(leakBound)
	leakBound = time.Second
	var r recorder
	r.run(func() { CheckNoLeaks(&r, dir) })
	<-done
	if len(r.errs) != 2 || !strings.Contains(strings.Join(r.errs, "\n"), "sleep 60") {
		t.Fatalf("leak check errors: %q; want the two long sleeps", r.errs)
	}
	for _, c := range []*exec.Cmd{inDir, byArg} {
		if err := c.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("pid %d: %v, want killed by the check", c.Process.Pid, err)
		}
	}
	if left := ProcessesUnder(other); len(left) != 1 {
		t.Fatalf("the check touched another directory's process: %v", left)
	}
	for _, d := range []string{"", ".", "tmp"} {
		if left := ProcessesUnder(d); len(left) != 0 {
			t.Fatalf("ProcessesUnder(%q) = %v: a relative path names no test's directory", d, left)
		}
	}
}

func TestNamesPath(t *testing.T) {
	dir := "/tmp/pgtest-1"
	for _, tt := range []struct {
		arg  string
		want bool
	}{
		{"/tmp/pgtest-1", true},
		{"/tmp/pgtest-1/n/data", true},
		{"--data-dir=/tmp/pgtest-1/etcd0", true},
		{"fence-keeper /tmp/pgtest-1/n/data", true},
		{"/tmp/pgtest-10/n/data", false},
		{"/x/tmp/pgtest-1", false},
	} {
		if got := namesPath([]string{tt.arg}, dir); got != tt.want {
			t.Errorf("namesPath(%q) = %v, want %v", tt.arg, got, tt.want)
		}
	}
}
