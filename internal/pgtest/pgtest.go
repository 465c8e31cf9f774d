package pgtest

import (
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/pgha/pgha/internal/testkit"
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

// FreePort is testkit.FreePort (free loopback ports reserved across
// the test binaries on the machine); kept for the callers that still
// name it here.
func FreePort(t testing.TB) int {
	t.Helper()
	return testkit.FreePort(t)
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
	// Runs before the removal and after every cleanup registered later
	// (those that stop the servers and keepers working in dir).
	testkit.CheckNoLeaks(t, dir)
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
