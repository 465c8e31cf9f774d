package pgtest

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/replication"
)

// Node is one Postgres server under test.
type Node struct {
	Name     string
	Port     int
	DataDir  string
	Config   config.PostgreSQL
	Instance *replication.Instance
}

// Config returns a config.PostgreSQL for a new node called name: a data
// directory (not yet created) in a fresh Dir, a free port on 127.0.0.1,
// the test roles and passwords, and parameters that keep tests fast and
// small (fsync off, 32MB shared_buffers). cluster_name is name, so the
// node shows up under that application_name in pg_stat_replication.
func Config(t testing.TB, name string) config.PostgreSQL {
	t.Helper()
	c := config.Default().PostgreSQL
	root := Dir(t)
	c.DataDir = filepath.Join(root, name, "data")
	mkdirs(t, c.DataDir)
	if os.Geteuid() == 0 {
		// The node's directory belongs to the postgres user, like root.
		chownTo(t, filepath.Dir(c.DataDir))
	}
	port := testkit.FreePort(t)
	c.Listen = "127.0.0.1:" + strconv.Itoa(port)
	c.ConnectAddress = c.Listen
	if bin := os.Getenv("PGHA_TEST_BIN_DIR"); bin != "" {
		c.BinDir = bin
	}
	c.Authentication = config.Authentication{
		Superuser:   config.Credentials{Username: SuperUser, Password: SuperPassword},
		Replication: config.Credentials{Username: ReplicationUser, Password: ReplicationPassword},
		Rewind:      config.Credentials{Username: RewindUser, Password: RewindPassword},
	}
	c.Parameters = map[string]any{
		"fsync":                        "off",
		"full_page_writes":             "on",
		"shared_buffers":               "32MB",
		"max_connections":              "50",
		"cluster_name":                 name,
		"wal_receiver_status_interval": "1s",
		"log_min_messages":             "info",
	}
	c.PgCtlTimeout = config.Duration(60 * time.Second)
	return c
}

// NewNode returns a Node for name with an uninitialized data directory
// (for CloneFrom); it is stopped and killed if need be in t.Cleanup.
func NewNode(t testing.TB, name string) *Node {
	t.Helper()
	return NewNodeFromConfig(t, name, Config(t, name))
}

// NewNodeFromConfig is NewNode with a caller-adjusted configuration.
func NewNodeFromConfig(t testing.TB, name string, c config.PostgreSQL) *Node {
	t.Helper()
	RequireUser(t)
	// initdb --no-sync: the test's data need not survive a machine crash.
	inst, err := replication.New(c, []any{"no-sync"}, Logger(t).With("node", name))
	if err != nil {
		t.Fatalf("pgtest: node %s: %v", name, err)
	}
	_, portStr, _ := net.SplitHostPort(c.Listen)
	port, _ := strconv.Atoi(portStr)
	n := &Node{Name: name, Port: port, DataDir: c.DataDir, Config: c, Instance: inst}
	t.Cleanup(func() { n.teardown(t) })
	return n
}

// NewPrimary initializes and starts a primary called "primary" (Init:
// initdb, roles, running).
func NewPrimary(t testing.TB) *Node {
	t.Helper()
	return NewPrimaryNamed(t, "primary")
}

// NewPrimaryNamed is NewPrimary with a node name.
func NewPrimaryNamed(t testing.TB, name string) *Node {
	t.Helper()
	n := NewNode(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := n.Instance.Init(ctx); err != nil {
		t.Fatalf("pgtest: init %s: %v", name, err)
	}
	return n
}

// NewReplica clones primary into a new node called name, starts it and
// waits until it streams (bounded by 60 s).
func NewReplica(t testing.TB, primary *Node, name string) *Node {
	t.Helper()
	n := NewNode(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := n.Instance.CloneFrom(ctx, primary.Primary()); err != nil {
		t.Fatalf("pgtest: clone %s from %s: %v", name, primary.Name, err)
	}
	if err := n.Instance.Start(ctx); err != nil {
		t.Fatalf("pgtest: start replica %s: %v", name, err)
	}
	n.WaitStreaming(t, 60*time.Second)
	return n
}

// Primary returns the address other nodes use to follow this one.
func (n *Node) Primary() replication.Primary {
	return replication.Primary{Host: "127.0.0.1", Port: n.Port}
}

// Addr is 127.0.0.1:port.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// DSN returns a postgres:// URL for user and db on this node; the known
// test roles get their password.
func (n *Node) DSN(user, db string) string {
	u := url.URL{Scheme: "postgres", Host: n.Addr(), Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=5"}
	switch user {
	case SuperUser:
		u.User = url.UserPassword(user, SuperPassword)
	case ReplicationUser:
		u.User = url.UserPassword(user, ReplicationPassword)
	case RewindUser:
		u.User = url.UserPassword(user, RewindPassword)
	default:
		u.User = url.User(user)
	}
	return u.String()
}

// Conn opens a superuser connection to database postgres, closed in
// t.Cleanup.
func (n *Node) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN(SuperUser, "postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", n.Name, err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_ = c.Close(cctx)
	})
	return c
}

// Exec runs sql as the superuser on a short-lived connection and fails
// the test on error.
func (n *Node) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN(SuperUser, "postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", n.Name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s on %s: %v", sql, n.Name, err)
	}
}

// WaitStreaming waits until this replica's WAL receiver is streaming.
func (n *Node) WaitStreaming(t testing.TB, timeout time.Duration) {
	t.Helper()
	n.WaitFor(t, timeout, "WAL receiver streaming", func(st replication.Status) bool {
		return st.Running && st.InRecovery && st.Receiver == "streaming"
	})
}

// WaitFor polls Status until cond holds, failing the test (with the
// last status and the server log tail) after timeout.
func (n *Node) WaitFor(t testing.TB, timeout time.Duration, what string, cond func(replication.Status) bool) replication.Status {
	t.Helper()
	var last replication.Status
	var lastErr error
	err := testkit.Poll(context.Background(), timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		last, lastErr = n.Instance.Status(ctx)
		return testkit.Missing(lastErr == nil && cond(last), what)
	})
	if err != nil {
		t.Fatalf("pgtest: %s: not %s after %s (last status %+v, error %v)\nserver log:\n%s",
			n.Name, what, timeout, last, lastErr, n.Instance.LogTail(30))
	}
	return last
}

// teardown stops the server immediately, killing its process group if
// that fails, so no postgres outlives the test.
func (n *Node) teardown(t testing.TB) {
	if !n.Instance.IsRunning() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Instance.Stop(ctx, replication.StopImmediate); err != nil {
		t.Logf("pgtest: stop %s: %v; killing it", n.Name, err)
	}
	if n.Instance.IsRunning() {
		if err := n.Instance.Kill(); err != nil {
			t.Errorf("pgtest: %s: %v", n.Name, err)
		}
	}
}

func chownTo(t testing.TB, path string) {
	t.Helper()
	uid, gid := osUserIDs(t)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatalf("pgtest: chown %s: %v", path, err)
	}
}

func osUserIDs(t testing.TB) (int, int) {
	t.Helper()
	u, err := user.Lookup(OSUser)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// Chown gives path to OSUser when the test runs as root.
func Chown(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		chownTo(t, path)
	}
}
