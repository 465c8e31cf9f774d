package replication_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

// A postmaster killed with -9 stays a zombie until its parent reaps it; it
// must count as stopped at once, or restart-in-place waits for the reaper.
func TestZombiePostmasterIsNotRunning(t *testing.T) {
	n := pgtest.NewNode(t, "zombie")
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A program named postgres so that the comm check passes.
	bin := filepath.Join(t.TempDir(), "postgres")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "30")
	cmd.Dir = n.DataDir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pidFile := filepath.Join(n.DataDir, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n%s\n", cmd.Process.Pid, n.DataDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	if !n.Instance.IsRunning() {
		t.Fatal("a live process named postgres working in the data dir is not seen as running")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Not reaped: the process is a zombie now. Wait until the kernel says so.
	testkit.Eventually(t, 5*time.Second, "the process a zombie", func() error {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		return testkit.Missing(len(stat) > 0 && containsState(string(stat), 'Z'), fmt.Sprintf("stat %q", stat))
	})
	if n.Instance.IsRunning() {
		t.Error("a zombie postmaster is reported as running")
	}
}

func containsState(stat string, state byte) bool {
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == state
		}
	}
	return false
}
