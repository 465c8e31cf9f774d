package e2e

import (
	"context"

	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/pgtest"
)

// Test timing: ttl 6s, loop_wait 1s, retry_timeout 2s (the smallest ttl
// validation allows for them) keeps failovers short.
func testDCS() config.DynamicConfig {
	d := config.DefaultDynamic()
	d.TTL = config.Duration(6 * time.Second)
	d.LoopWait = config.Duration(time.Second)
	d.RetryTimeout = config.Duration(2 * time.Second)
	return d
}

type node struct {
	t      *testing.T
	name   string
	cfg    config.Config
	pg     *pgtest.Node
	proxy  *proxy
	d      *daemon.Daemon
	cancel context.CancelFunc
	done   chan error
}

type testCluster struct {
	t     *testing.T
	nodes []*node
}

// newCluster prepares n nodes (not started). withProxy routes each node's
// etcd traffic through its own cuttable proxy. edit adjusts node i's config.
func newCluster(t *testing.T, n int, withProxy bool, edit func(i int, c *config.Config)) *testCluster {
	t.Helper()
	return newClusterOn(t, pgtest.StartEtcd(t), n, withProxy, edit)
}

// newClusterOn is newCluster on given etcd endpoints.
func newClusterOn(t *testing.T, endpoints []string, n int, withProxy bool, edit func(i int, c *config.Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("node%d", i+1)
		c := config.Default()
		c.Scope = "e2e"
		c.Name = name
		c.Etcd.Endpoints = endpoints
		c.RESTAPI.Listen = fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
		c.RESTAPI.ConnectAddress = c.RESTAPI.Listen
		c.PostgreSQL = pgtest.Config(t, name)
		c.Bootstrap.DCS = testDCS()
		nd := &node{t: t, name: name}
		if withProxy {
			nd.proxy = newProxy(t, strings.TrimPrefix(endpoints[0], "http://"))
			c.Etcd.Endpoints = []string{"http://" + nd.proxy.Addr()}
		}
		if edit != nil {
			edit(i, &c)
		}
		nd.cfg = c
		nd.pg = pgtest.NewNodeFromConfig(t, name, c.PostgreSQL)
		tc.nodes = append(tc.nodes, nd)
		t.Cleanup(func() { nd.stop() })
	}
	return tc
}

func (n *node) start() {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, n.cfg, pgtest.Logger(n.t).With("daemon", n.name))
	if err != nil {
		cancel()
		n.t.Fatalf("daemon %s: %v", n.name, err)
	}
	n.d, n.cancel, n.done = d, cancel, make(chan error, 1)
	go func() { n.done <- d.Run(ctx) }()
}

// stop stops the daemon cleanly (bounded).
func (n *node) stop() {
	if n.d == nil {
		return
	}
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(90 * time.Second):
		n.t.Errorf("daemon %s did not stop within 90s", n.name)
	}
	n.d = nil
}

// kill9 is kill -9 of the node: the daemon stops dead (no handover, no
// lease revoke) and its Postgres gets SIGKILL.
func (n *node) kill9() {
	n.t.Helper()
	n.d.Kill()
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.t.Fatalf("daemon %s did not die", n.name)
	}
	n.d = nil
	if err := n.pg.Instance.Kill(); err != nil {
		n.t.Fatal(err)
	}
}

// conn opens a superuser connection with a short timeout.
func (n *node) conn(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(n.pg.DSN(pgtest.SuperUser, "postgres"))
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

// exec runs sql on the node, failing the test on error.
func (n *node) exec(sql string, args ...any) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := n.conn(ctx)
	if err != nil {
		n.t.Fatalf("%s: connect: %v", n.name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		n.t.Fatalf("%s: %s: %v", n.name, sql, err)
	}
}

// count returns SELECT count(*) FROM table, or -1 when it fails.
func (n *node) count(table string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := n.conn(ctx)
	if err != nil {
		return -1
	}
	defer c.Close(context.Background())
	var k int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&k); err != nil {
		return -1
	}
	return k
}

// writable reports whether the node accepts a write right now.
func (n *node) writable(ctx context.Context, table string) bool {
	c, err := n.conn(ctx)
	if err != nil {
		return false
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "INSERT INTO "+table+" (node) VALUES ($1)", n.name)
	return err == nil
}

// view reads the cluster from etcd directly.
func (tc *testCluster) view() cluster.View {
	for _, n := range tc.nodes {
		if n.d != nil {
			if v, ok := n.d.View(); ok {
				return v
			}
		}
	}
	return cluster.View{}
}

// waitFor polls cond every 200 ms until it returns "" or timeout passes;
// cond returns what is still missing.
func (tc *testCluster) waitFor(timeout time.Duration, what string, cond func() string) {
	tc.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tc.t.Fatalf("%s: not reached after %s: %s", what, timeout, last)
}

// waitHealthy waits until leader is primary (any member when leader is
// "") and every other running node streams from it; it returns the leader.
func (tc *testCluster) waitHealthy(timeout time.Duration, want ...string) *node {
	tc.t.Helper()
	var lead *node
	tc.waitFor(timeout, "healthy cluster", func() string {
		v := tc.view()
		if v.Leader == "" {
			return "no leader"
		}
		lead = tc.byName(v.Leader)
		names := want
		if len(names) == 0 {
			for _, n := range tc.nodes {
				if n.d != nil {
					names = append(names, n.name)
				}
			}
		}
		for _, name := range names {
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

func (tc *testCluster) byName(name string) *node {
	for _, n := range tc.nodes {
		if n.name == name {
			return n
		}
	}
	tc.t.Fatalf("no node %q", name)
	return nil
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
