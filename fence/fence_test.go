package fence_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/fence"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/replication"
)

func TestMain(m *testing.M) {
	fence.RunKeeperIfAsked()
	os.Exit(m.Run())
}

// newClient returns a client for n's data directory whose keeper is this
// test binary; the keeper is dismissed (or, failing that, killed through
// its socket's owner) at cleanup.
func newClient(t *testing.T, n *pgtest.Node, wd config.Watchdog) *fence.Client {
	t.Helper()
	run := n.DataDir + ".pgha"
	if wd.Mode == "" {
		wd.Mode = "off"
	}
	c := fence.NewClient(fence.ClientConfig{
		DataDir:  n.DataDir,
		Socket:   filepath.Join(run, "fence.sock"),
		LogFile:  filepath.Join(run, "fence-keeper.log"),
		Watchdog: wd,
		Log:      pgtest.Logger(t),
	})
	t.Cleanup(func() {
		_ = n.Instance.Stop(context.Background(), replication.StopImmediate)
		waitKeeperGone(t, c, 10*time.Second)
		if b, err := os.ReadFile(filepath.Join(run, "fence-keeper.log")); err == nil {
			t.Logf("keeper log:\n%s", b)
		}
	})
	return c
}

// waitKeeperGone dismisses the keeper and waits until nothing answers on
// its socket: no keeper outlives its test.
func waitKeeperGone(t *testing.T, c *fence.Client, timeout time.Duration) {
	t.Helper()
	if testkit.Poll(context.Background(), timeout, func() error {
		_ = c.Dismiss()
		_, err := c.Status()
		return testkit.Missing(err != nil, "the keeper answers")
	}) != nil {
		t.Errorf("fence keeper still answers %s after its test", timeout)
	}
}

func writable(n *pgtest.Node) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN(pgtest.SuperUser, "postgres"))
	if err != nil {
		return false
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "INSERT INTO probe VALUES (1)")
	return err == nil
}

// allowedFor reads how long the keeper still allows writes (negative:
// since when the permission has run out, on the keeper's clock).
func allowedFor(t *testing.T, c *fence.Client) time.Duration {
	t.Helper()
	s, err := c.Status()
	if err != nil {
		t.Fatalf("keeper status: %v", err)
	}
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "allowed_for="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("keeper status %q: %v", s, err)
			}
			return d
		}
	}
	t.Fatalf("keeper status %q has no allowed_for", s)
	return 0
}

// TestKeeperStopsPostgresWhenPermissionEnds: a primary whose daemon stops
// renewing the permission (dead or frozen) is stopped by the keeper right
// after the deadline, not before it.
func TestKeeperStopsPostgresWhenPermissionEnds(t *testing.T) {
	pgtest.RequireUser(t)
	n := pgtest.NewPrimaryNamed(t, "fenced")
	n.Exec(t, "CREATE TABLE probe (v int)")
	c := newClient(t, n, config.Watchdog{})
	until := time.Now().Add(1500 * time.Millisecond)
	if err := c.Allow(until, time.Now(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close() // the daemon dies: nobody renews
	testkit.Eventually(t, 10*time.Second, "200 ms before the deadline, postgres writable all along", func() error {
		if !writable(n) {
			t.Fatalf("postgres refused writes %s before the permission ended", time.Until(until))
		}
		return testkit.Missing(!time.Now().Before(until.Add(-200*time.Millisecond)), "deadline not near yet")
	})
	testkit.Eventually(t, 10*time.Second, "postgres stopped by the keeper", func() error {
		return testkit.Missing(!replication.MayTakeWrites(n.DataDir), "postgres takes writes")
	})
	stopped := time.Now()
	t.Logf("postgres stopped %s after the deadline", stopped.Sub(until).Round(time.Millisecond))
	if writable(n) {
		t.Fatal("postgres takes writes after the keeper stopped it")
	}
}

// TestKeeperSparesStandby: a replica (standby.signal) takes no writes, so
// an expired permission does not stop it.
func TestKeeperSparesStandby(t *testing.T) {
	pgtest.RequireUser(t)
	p := pgtest.NewPrimaryNamed(t, "up")
	r := pgtest.NewReplica(t, p, "down")
	c := newClient(t, r, config.Watchdog{})
	if err := c.Allow(time.Now().Add(100*time.Millisecond), time.Now(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The replica still runs once the permission has been over for 20
	// keeper polls (of 20 ms), on the keeper's own clock.
	testkit.Eventually(t, 5*time.Second, "the permission over for 400 ms", func() error {
		if !r.Instance.IsRunning() {
			t.Fatal("the keeper stopped a standby")
		}
		left := allowedFor(t, c)
		return testkit.Missing(left <= -400*time.Millisecond, "allowed for "+left.String())
	})
	if !r.Instance.IsRunning() {
		t.Fatal("the keeper stopped a standby")
	}
	if s, _ := c.Status(); !strings.Contains(s, "fences=0") {
		t.Fatalf("keeper status %q: want no fence", s)
	}
}

// TestKeeperAdoptedByNextDaemon: a daemon restarted before the deadline
// reaches the same keeper and extends the permission: the primary keeps
// running past the first deadline.
func TestKeeperAdoptedByNextDaemon(t *testing.T) {
	pgtest.RequireUser(t)
	n := pgtest.NewPrimaryNamed(t, "adopted")
	n.Exec(t, "CREATE TABLE probe (v int)")
	first := newClient(t, n, config.Watchdog{})
	until := time.Now().Add(time.Second)
	if err := first.Allow(until, time.Now(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before, err := first.Status()
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	next := newClient(t, n, config.Watchdog{})
	if err := next.Allow(time.Now().Add(30*time.Second), time.Now(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	after, err := next.Status()
	if err != nil {
		t.Fatal(err)
	}
	if pid := func(s string) string { f := strings.Fields(s); return f[1] }; pid(before) != pid(after) {
		t.Fatalf("a second keeper was started (%q, then %q): the next daemon must reach the running one", before, after)
	}
	// Past the first deadline (and a few keeper polls) it still takes
	// writes, checked all along.
	testkit.Eventually(t, 10*time.Second, "300 ms past the first deadline", func() error {
		if !writable(n) {
			t.Fatal("the primary was stopped although the next daemon extended its permission")
		}
		return testkit.Missing(time.Now().After(until.Add(300*time.Millisecond)), "first deadline not passed yet")
	})
	// A clean stop dismisses the keeper only once postgres is down.
	if err := next.Dismiss(); err == nil {
		t.Fatal("the keeper left while postgres still takes writes")
	}
}

// TestKeeperStopsFrozenPostmaster: a postmaster stopped with SIGSTOP
// (frozen, its backends still serving) is stopped all the same.
func TestKeeperStopsFrozenPostmaster(t *testing.T) {
	pgtest.RequireUser(t)
	n := pgtest.NewPrimaryNamed(t, "frozen")
	n.Exec(t, "CREATE TABLE probe (v int)")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held, err := pgx.Connect(ctx, n.DSN(pgtest.SuperUser, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	pid := replication.PostmasterPID(n.DataDir)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	if _, err := held.Exec(ctx, "INSERT INTO probe VALUES (1)"); err != nil {
		t.Fatalf("a backend of a frozen postmaster should still write (that is the danger): %v", err)
	}
	c := newClient(t, n, config.Watchdog{})
	if err := c.Allow(time.Now().Add(200*time.Millisecond), time.Now(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	testkit.Eventually(t, 15*time.Second, "frozen postgres stopped", func() error {
		return testkit.Missing(!replication.MayTakeWrites(n.DataDir), "postgres takes writes")
	})
	ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
	defer icancel()
	if _, err := held.Exec(ictx, "INSERT INTO probe VALUES (2)"); err == nil {
		t.Fatal("the held connection still writes after the fence")
	}
}

// TestKeeperWatchdogRequired: with watchdog.mode required, a device that
// cannot be armed refuses the permission (the node must not lead); in
// automatic mode the permission is granted without it.
func TestKeeperWatchdogRequired(t *testing.T) {
	pgtest.RequireUser(t)
	n := pgtest.NewPrimaryNamed(t, "wd")
	fake := filepath.Join(t.TempDir(), "not-a-watchdog")
	if err := os.WriteFile(fake, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	req := newClient(t, n, config.Watchdog{Mode: "required", Device: fake, SafetyMargin: config.Duration(2 * time.Second)})
	err := req.Allow(time.Now().Add(5*time.Second), time.Now(), 10*time.Second)
	if !errors.Is(err, fence.ErrRefused) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("required watchdog on a plain file: err %v, want a refusal naming the timeout ioctl", err)
	}
}

func TestKeeperWatchdogAutomatic(t *testing.T) {
	pgtest.RequireUser(t)
	n := pgtest.NewPrimaryNamed(t, "wdauto")
	auto := newClient(t, n, config.Watchdog{Mode: "automatic", Device: "/nonexistent/watchdog", SafetyMargin: config.Duration(2 * time.Second)})
	if err := auto.Allow(time.Now().Add(5*time.Second), time.Now(), 10*time.Second); err != nil {
		t.Fatalf("automatic watchdog without a device: %v, want the permission granted", err)
	}
	if s, err := auto.Status(); err != nil || !strings.Contains(s, "watchdog=off") {
		t.Fatalf("status %q, %v", s, err)
	}
}
