package replication_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/replication"
)

// Bad environments must give a clear error naming the problem and the
// fix, quickly, never a hang.

func TestMissingBinaries(t *testing.T) {
	cfg := pgtest.Config(t, "nobin")
	cfg.BinDir = t.TempDir()
	_, err := replication.New(cfg, nil, nil)
	if err == nil {
		t.Fatal("New accepted a bin_dir without Postgres programs")
	}
	for _, want := range []string{"postgresql-15", "pg_ctl", "initdb", "pg_basebackup", cfg.BinDir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDataDirOwnedByAnotherUser(t *testing.T) {
	cfg := pgtest.Config(t, "owner")
	if os.Geteuid() == 0 {
		// Root creates the data directory and keeps it: not the postgres user's.
		if err := os.Mkdir(cfg.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
	} else {
		cfg.DataDir = "/etc" // root-owned, and Init must not touch it
	}
	inst, err := replication.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Ctx(t, 30*time.Second)
	for name, op := range map[string]func(context.Context) error{
		"Init":  inst.Init,
		"Start": inst.Start,
		"CloneFrom": func(ctx context.Context) error {
			return inst.CloneFrom(ctx, replication.Primary{Host: "127.0.0.1", Port: 1})
		},
	} {
		err := op(ctx)
		if !errors.Is(err, replication.ErrWrongOwner) {
			t.Errorf("%s: want ErrWrongOwner, got %v", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "chown -R postgres") || !strings.Contains(err.Error(), cfg.DataDir) {
			t.Errorf("%s: error does not say what to do: %v", name, err)
		}
	}
}

func TestDataDirUnreachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: running as postgres, which cannot make a directory it cannot reach; CI runs as root and covers this")
	}
	cfg := pgtest.Config(t, "unreachable")
	hidden := filepath.Join(t.TempDir(), "private") // t.TempDir is root's, mode 0700
	cfg.DataDir = filepath.Join(hidden, "data")
	if err := os.Mkdir(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	inst, err := replication.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = inst.Init(testkit.Ctx(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), "cannot reach data directory") || !strings.Contains(err.Error(), "chmod o+x "+hidden) {
		t.Fatalf("want an error naming the unreachable directory, got %v", err)
	}
}

func TestPortInUse(t *testing.T) {
	ctx := testkit.Ctx(t, 2*time.Minute)
	n := pgtest.NewPrimaryNamed(t, "port")
	if err := n.Instance.Stop(ctx, replication.StopFast); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", n.Addr())
	if err != nil {
		t.Fatalf("occupy %s: %v", n.Addr(), err)
	}
	defer l.Close()
	start := time.Now()
	err = n.Instance.Start(ctx)
	if !errors.Is(err, replication.ErrPortInUse) {
		t.Fatalf("want ErrPortInUse, got %v", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(n.Port)) || !strings.Contains(err.Error(), "postgresql.listen") {
		t.Fatalf("error does not name the port and the setting: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s to notice", d)
	}
	if n.Instance.IsRunning() {
		t.Fatal("postgres runs although its port was taken")
	}
	l.Close()
	if err := n.Instance.Start(ctx); err != nil {
		t.Fatalf("start once the port is free: %v", err)
	}
}

// noCloneLeft fails if the data directory or a temporary clone exists.
func noCloneLeft(t *testing.T, dataDir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		t.Errorf("%s holds a cluster after a failed clone", dataDir)
	}
	if m, _ := filepath.Glob(dataDir + ".pgha-clone-*"); len(m) > 0 {
		t.Errorf("half copy left behind: %v", m)
	}
}

func TestCloneSourceRefuses(t *testing.T) {
	ctx := testkit.Ctx(t, 2*time.Minute)
	t.Run("connection refused", func(t *testing.T) {
		n := pgtest.NewNode(t, "refused")
		port := testkit.FreePort(t) // nothing listens there
		start := time.Now()
		err := n.Instance.CloneFrom(ctx, replication.Primary{Host: "127.0.0.1", Port: port})
		if err == nil {
			t.Fatal("clone from a closed port succeeded")
		}
		want := "replication: pg_basebackup from 127.0.0.1:" + strconv.Itoa(port) + ": "
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "Connection refused") {
			t.Fatalf("error %q: want prefix %q and the tool's stderr", err, want)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("took %s", d)
		}
		noCloneLeft(t, n.DataDir)
	})
	t.Run("wrong password", func(t *testing.T) {
		p := pgtest.NewPrimaryNamed(t, "src")
		cfg := pgtest.Config(t, "badpw")
		cfg.Authentication.Replication.Password = "wrong"
		n := pgtest.NewNodeFromConfig(t, "badpw", cfg)
		err := n.Instance.CloneFrom(ctx, p.Primary())
		if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
			t.Fatalf("want the server's refusal in the error, got %v", err)
		}
		noCloneLeft(t, n.DataDir)
	})
	t.Run("source hangs, ctx cancelled", func(t *testing.T) {
		// A source that accepts TCP and never answers: the clone must
		// stop when ctx ends and remove its temporary copy.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		n := pgtest.NewNode(t, "hang")
		cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = n.Instance.CloneFrom(cctx, replication.Primary{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a deadline error, got %v", err)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Fatalf("clone returned %s after its deadline", d)
		}
		noCloneLeft(t, n.DataDir)
	})
	t.Run("data dir not empty", func(t *testing.T) {
		n := pgtest.NewNode(t, "notempty")
		if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.DataDir, "precious"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, n.DataDir)
		err := n.Instance.CloneFrom(ctx, replication.Primary{Host: "127.0.0.1", Port: 1})
		if !errors.Is(err, replication.ErrAlreadyInitialized) || !strings.Contains(err.Error(), "precious") {
			t.Fatalf("want ErrAlreadyInitialized naming the file, got %v", err)
		}
		if _, err := os.Stat(filepath.Join(n.DataDir, "precious")); err != nil {
			t.Fatalf("clone touched an existing file: %v", err)
		}
	})
}

// TestStartAfterCrash kills the postmaster alone (its backends notice
// and exit) and leaves a postmaster.pid naming a live process of the
// postgres user that is not this server, as when the pid is reused by
// another cluster's backend (Postgres itself would refuse to start):
// Start must recover and keep every committed row. It also exercises
// Command.
func TestStartAfterCrash(t *testing.T) {
	ctx := testkit.Ctx(t, 2*time.Minute)
	n := pgtest.NewPrimaryNamed(t, "crash")
	n.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, note text)")
	insertRows(t, n, 1, 500)
	st, err := n.Instance.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the postmaster gone after SIGKILL", func() error {
		return testkit.Missing(!n.Instance.IsRunning(), "postmaster survived SIGKILL")
	})
	// Stopped: Status still reads the control file.
	down, err := n.Instance.Status(ctx)
	if err != nil || down.Running || down.SystemIdentifier != st.SystemIdentifier || down.ClusterState != "in production" {
		t.Fatalf("status after the crash: %+v, %v", down, err)
	}
	lock := filepath.Join(n.DataDir, "postmaster.pid")
	b, err := os.ReadFile(lock)
	if err != nil {
		t.Fatalf("no stale postmaster.pid after the crash: %v", err)
	}
	_, rest, _ := strings.Cut(string(b), "\n")
	// A live process of the postgres user now holds the old pid's place.
	sleeper, err := replication.Command(ctx, pgtest.OSUser, "/bin/sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	if err := os.WriteFile(lock, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"+rest), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Instance.Start(ctx); err != nil {
		t.Fatal(err)
	}
	countRows(t, n, 500)
}

// TestStartErrorShowsServerLog: a server that refuses to start explains
// why through the last lines of its log.
func TestStartErrorShowsServerLog(t *testing.T) {
	cfg := pgtest.Config(t, "badparam")
	cfg.Parameters["shared_buffers"] = "lots"
	n := pgtest.NewNodeFromConfig(t, "badparam", cfg)
	err := n.Instance.Init(testkit.Ctx(t, time.Minute))
	if err == nil {
		t.Fatal("started with shared_buffers = lots")
	}
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers": "lots"`) || !strings.Contains(err.Error(), n.Instance.LogPath()) {
		t.Fatalf("error does not carry the server log: %v", err)
	}
}

// TestCheckSource: the check a re-clone and a rewind make before they
// stop anything answers for a live source and fails, naming it, for a
// closed port and for a refused replication login.
func TestCheckSource(t *testing.T) {
	ctx := testkit.Ctx(t, 2*time.Minute)
	p := pgtest.NewPrimaryNamed(t, "checksrc")
	n := pgtest.NewNode(t, "checker")
	if err := n.Instance.CheckSource(ctx, p.Primary()); err != nil {
		t.Fatalf("a running primary: %v", err)
	}
	port := testkit.FreePort(t)
	err := n.Instance.CheckSource(ctx, replication.Primary{Host: "127.0.0.1", Port: port})
	if err == nil || !strings.Contains(err.Error(), "cannot be reached") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("a closed port: %v", err)
	}
	cfg := pgtest.Config(t, "checkbadpw")
	cfg.Authentication.Replication.Password = "wrong"
	bad := pgtest.NewNodeFromConfig(t, "checkbadpw", cfg)
	if err := bad.Instance.CheckSource(ctx, p.Primary()); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("a wrong replication password: %v", err)
	}
}
