package daemontest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/leader"
)

// Scope is the scope of test clusters.
const Scope = "e2e"

// DCS is the test timing: ttl 6s, loop_wait 1s, retry_timeout 2s (the
// smallest ttl validation allows for them) keeps failovers short.
func DCS() config.DynamicConfig {
	d := config.DefaultDynamic()
	d.TTL = config.Duration(6 * time.Second)
	d.LoopWait = config.Duration(time.Second)
	d.RetryTimeout = config.Duration(2 * time.Second)
	return d
}

// Options shape a test cluster.
type Options struct {
	// Endpoints of the etcd to use; empty starts an embedded one.
	Endpoints []string
	// WithProxy routes each node's etcd traffic through its own Proxy.
	WithProxy bool
	// Edit adjusts node i's config (0-based) before it is used.
	Edit func(i int, c *config.Config)
}

// Node is one pgha daemon (in-process) with its Postgres.
type Node struct {
	t    testing.TB
	Name string
	// Config is the node's configuration; change it only before Start.
	Config config.Config
	// PG is the node's Postgres (DSN, Kill, teardown in t.Cleanup).
	PG *pgtest.Node
	// Proxy carries this node's etcd traffic when Options.WithProxy.
	Proxy *Proxy
	// D is the running daemon, nil when stopped.
	D      *daemon.Daemon
	cancel context.CancelFunc
	done   chan error
}

// Cluster is a set of nodes named node1..nodeN sharing one etcd.
type Cluster struct {
	t         testing.TB
	Endpoints []string
	Nodes     []*Node

	mu  sync.Mutex
	cli *clientv3.Client
}

// New prepares n nodes (not started); everything is torn down in
// t.Cleanup.
func New(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	endpoints := o.Endpoints
	if len(endpoints) == 0 {
		endpoints = pgtest.StartEtcd(t)
	}
	tc := &Cluster{t: t, Endpoints: endpoints}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("node%d", i+1)
		c := config.Default()
		c.Scope = Scope
		c.Name = name
		c.Etcd.Endpoints = endpoints
		c.RESTAPI.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		c.RESTAPI.ConnectAddress = c.RESTAPI.Listen
		c.PostgreSQL = pgtest.Config(t, name)
		c.Bootstrap.DCS = DCS()
		nd := &Node{t: t, Name: name}
		if o.WithProxy {
			nd.Proxy = NewProxy(t, strings.TrimPrefix(endpoints[0], "http://"))
			c.Etcd.Endpoints = []string{"http://" + nd.Proxy.Addr()}
		}
		if o.Edit != nil {
			o.Edit(i, &c)
		}
		nd.Config = c
		nd.PG = pgtest.NewNodeFromConfig(t, name, c.PostgreSQL)
		tc.Nodes = append(tc.Nodes, nd)
		t.Cleanup(nd.Stop)
	}
	return tc
}

// Start builds and runs the node's daemon; each wire hook runs on the new
// daemon before Run (d.Add a REST API, d.OnFence a pooler, ...).
func (n *Node) Start(wire ...func(d *daemon.Daemon) error) {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, n.Config, pgtest.Logger(n.t).With("daemon", n.Name))
	if err != nil {
		cancel()
		n.t.Fatalf("daemontest: daemon %s: %v", n.Name, err)
	}
	for _, w := range wire {
		if err := w(d); err != nil {
			cancel()
			n.t.Fatalf("daemontest: wire daemon %s: %v", n.Name, err)
		}
	}
	n.D, n.cancel, n.done = d, cancel, make(chan error, 1)
	go func() { n.done <- d.Run(ctx) }()
}

// Stop stops the daemon cleanly (the leader hands over; bounded).
func (n *Node) Stop() {
	if n.D == nil {
		return
	}
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(90 * time.Second):
		n.t.Errorf("daemontest: daemon %s did not stop within 90s", n.Name)
	}
	n.D = nil
}

// Kill9 is kill -9 of the node: the daemon stops dead (no handover, no
// lease revoke) and its Postgres gets SIGKILL.
func (n *Node) Kill9() {
	n.t.Helper()
	n.KillDaemon()
	if err := n.PG.Instance.Kill(); err != nil {
		n.t.Fatal(err)
	}
}

// KillDaemon is kill -9 of the daemon alone: it stops dead and leaves its
// Postgres running, its lease to expire.
func (n *Node) KillDaemon() {
	n.t.Helper()
	n.D.Kill()
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.t.Fatalf("daemontest: daemon %s did not die", n.Name)
	}
	n.D = nil
}

// Conn opens a superuser connection with a short connect timeout.
func (n *Node) Conn(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(n.PG.DSN(pgtest.SuperUser, "postgres"))
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

// Exec runs sql on the node, failing the test on error.
func (n *Node) Exec(sql string, args ...any) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := n.Conn(ctx)
	if err != nil {
		n.t.Fatalf("daemontest: %s: connect: %v", n.Name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		n.t.Fatalf("daemontest: %s: %s: %v", n.Name, sql, err)
	}
}

// Value runs a one-value query on the node and returns the value as
// text, or "error: ..." (for polling conditions and their messages).
func (n *Node) Value(ctx context.Context, sql string, args ...any) string {
	c, err := n.Conn(ctx)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close(context.Background())
	var s string
	if err := c.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		return "error: " + err.Error()
	}
	return s
}

// Count returns SELECT count(*) FROM from, or -1 when it fails.
func (n *Node) Count(from string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := n.Conn(ctx)
	if err != nil {
		return -1
	}
	defer c.Close(context.Background())
	var k int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+from).Scan(&k); err != nil {
		return -1
	}
	return k
}

// Writable reports whether the node takes an INSERT INTO table (node)
// VALUES (its name) right now.
func (n *Node) Writable(ctx context.Context, table string) bool {
	c, err := n.Conn(ctx)
	if err != nil {
		return false
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "INSERT INTO "+table+" (node) VALUES ($1)", n.Name)
	return err == nil
}

// View reads the cluster from etcd directly (not through any proxy and
// not from a daemon's cached snapshot); an empty View when etcd does not
// answer within 3 s.
func (tc *Cluster) View() cluster.View {
	tc.mu.Lock()
	if tc.cli == nil {
		cli, err := clientv3.New(clientv3.Config{Endpoints: tc.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			tc.mu.Unlock()
			return cluster.View{}
		}
		tc.cli = cli
		tc.t.Cleanup(func() { cli.Close() })
	}
	cli := tc.cli
	tc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	v, err := leader.ReadView(ctx, cli, "/service/", Scope)
	if err != nil {
		return cluster.View{}
	}
	return v
}

// WaitFor polls cond until it returns "" or timeout passes; cond
// returns what is still missing, which the failure names.
func (tc *Cluster) WaitFor(timeout time.Duration, what string, cond func() string) {
	tc.t.Helper()
	testkit.Eventually(tc.t, timeout, "daemontest: "+what, func() error {
		missing := cond()
		return testkit.Missing(missing == "", missing)
	})
}

// WaitHealthy waits until the leader runs as primary and every other named
// node (default: every started node) streams; it returns the leader.
func (tc *Cluster) WaitHealthy(timeout time.Duration, names ...string) *Node {
	tc.t.Helper()
	var lead *Node
	tc.WaitFor(timeout, "healthy cluster", func() string {
		v := tc.View()
		if v.Leader == "" {
			return "no leader"
		}
		lead = tc.ByName(v.Leader)
		want := names
		if len(want) == 0 {
			for _, n := range tc.Nodes {
				if n.D != nil {
					want = append(want, n.Name)
				}
			}
		}
		for _, name := range want {
			m, ok := v.Member(name)
			if !ok {
				return name + " has no member key"
			}
			if name == v.Leader {
				if m.Role != cluster.RolePrimary || m.State != cluster.StateRunning {
					return fmt.Sprintf("leader %s is %s/%s", name, m.Role, m.State)
				}
			} else if m.Role != cluster.RoleReplica || m.State != cluster.StateStreaming {
				return fmt.Sprintf("%s is %s/%s", name, m.Role, m.State)
			}
		}
		return ""
	})
	return lead
}

// ByName returns the node called name.
func (tc *Cluster) ByName(name string) *Node {
	for _, n := range tc.Nodes {
		if n.Name == name {
			return n
		}
	}
	tc.t.Fatalf("daemontest: no node %q", name)
	return nil
}
