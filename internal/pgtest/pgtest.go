package pgtest

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// OSUser is the OS account Postgres runs as in tests.
const OSUser = "postgres"

// Passwords of the roles every test node has (scram-sha-256).
const (
	SuperUser           = "postgres"
	SuperPassword       = "pgtest-super"
	ReplicationUser     = "replicator"
	ReplicationPassword = "pgtest-repl"
	RewindUser          = "rewind_user"
	RewindPassword      = "pgtest-rewind"
)

// RequireUser fails the test unless it can run Postgres: the process is
// root (pgtest switches to OSUser) or is OSUser.
func RequireUser(t testing.TB) {
	t.Helper()
	SkipIfShort(t, "Postgres")
	u, err := user.Lookup(OSUser)
	if err != nil {
		t.Fatalf("pgtest: OS user %q does not exist: install postgresql-15 (scripts/install-deps.sh) which creates it", OSUser)
	}
	if euid := os.Geteuid(); euid != 0 && strconv.Itoa(euid) != u.Uid {
		t.Fatalf("pgtest: tests start real Postgres and must run as root (pgtest switches to %s) or as %s; running as uid %d", OSUser, OSUser, euid)
	}
}

// SkipIfShort skips an integration test in the fast tier (go test
// -short, make check): what needs names what it would start.
func SkipIfShort(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test (needs %s): skipped with -short", needs)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that is free and reserved for
// this test until its cleanup. Ports come from below the kernel's
// ephemeral range (so no outgoing connection and no bind to port 0 takes
// them before the server binds), and every pgtest user on the machine
// (parallel test binaries) coordinates through reservation files in
// /tmp/pgtest-ports, so two tests never get the same port.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	if lo > 0 {
		if err := os.MkdirAll(portDir, 0o755); err == nil {
			_ = os.Chmod(portDir, 0o777|os.ModeSticky) // shared by root and postgres test runs
			for i := 0; i < 200; i++ {
				p := lo + rand.IntN(hi-lo)
				if reservePort(t, p) {
					return p
				}
			}
		}
	}
	// Fallback: let the kernel choose.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const portDir = "/tmp/pgtest-ports"

// portRange is [10000, start of the ephemeral range), or 0,0 when that
// range is too small to pick from.
func portRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < 12000 {
		return 0, 0
	}
	return 10000, low
}

// reservePort claims p with an exclusive file (a file older than an hour
// is a leftover of a killed run and is taken over) and checks that p can
// be bound now.
func reservePort(t testing.TB, p int) bool {
	path := filepath.Join(portDir, strconv.Itoa(p))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		st, serr := os.Stat(path)
		if serr != nil || time.Since(st.ModTime()) < time.Hour {
			return false
		}
		_ = os.Remove(path)
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err != nil {
			return false
		}
	}
	fmt.Fprintf(f, "%d %s\n", os.Getpid(), t.Name())
	_ = f.Close()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		_ = os.Remove(path)
		return false
	}
	_ = l.Close()
	t.Cleanup(func() { _ = os.Remove(path) })
	return true
}

// Dir returns a new empty directory owned by OSUser (mode 0755, under
// /tmp so the postgres user can reach it), removed in t.Cleanup.
func Dir(t testing.TB) string {
	t.Helper()
	RequireUser(t)
	base := "/tmp"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("pgtest: chmod %s: %v", dir, err)
	}
	if os.Geteuid() == 0 {
		chownTo(t, dir)
	}
	return dir
}

// Logger returns a slog.Logger writing through t.Log (debug level). Lines
// logged after the test ended are dropped instead of panicking.
func Logger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs after every later cleanup
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(trimNL(p)))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func trimNL(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}

var _ io.Writer = (*tWriter)(nil)

// mkdirs is used by Config for the node's parent directory.
func mkdirs(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}
