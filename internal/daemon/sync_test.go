package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestSynchronousMode: with synchronous_mode the leader makes one
// streaming replica its synchronous standby (synchronous_standby_names,
// confirmed in pg_stat_replication, then the sync key), and when the
// leader dies only that standby takes over, even though the other
// replica would win the usual tie (same position, smaller name). With
// synchronous_mode_strict and no standby left, commits wait.
func TestSynchronousMode(t *testing.T) {
	pgtest.RequireUser(t)
	tc := daemontest.New(t, 3, daemontest.Options{Edit: func(i int, c *config.Config) {
		c.Bootstrap.DCS.SynchronousMode = true
	}})
	node1, node2, node3 := tc.Nodes[0], tc.Nodes[1], tc.Nodes[2]
	node1.Start()
	tc.WaitHealthy(2*time.Minute, "node1")
	// node3 streams first, so it becomes the synchronous standby and
	// keeps the role while it streams.
	node3.Start()
	tc.WaitHealthy(3*time.Minute, "node1", "node3")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tc.WaitFor(30*time.Second, "node3 confirmed as synchronous standby", func() string {
		v := tc.View()
		if v.Sync == nil || v.Sync.Leader != "node1" || v.Sync.SyncStandby != "node3" {
			return fmt.Sprintf("sync key %+v", v.Sync)
		}
		if s := node1.Value(ctx, "SHOW synchronous_standby_names"); !strings.Contains(s, `"node3"`) {
			return "synchronous_standby_names = " + s
		}
		if s := node1.Value(ctx, "SELECT coalesce(string_agg(application_name || ':' || sync_state, ','), '') FROM pg_stat_replication"); !strings.Contains(s, "node3:sync") {
			return "pg_stat_replication: " + s
		}
		return ""
	})
	node2.Start()
	tc.WaitHealthy(3 * time.Minute)
	node1.Exec("CREATE TABLE sync_probe (id int)")
	node1.Exec("INSERT INTO sync_probe SELECT generate_series(1, 100)")
	if v := tc.View(); v.Sync == nil || v.Sync.SyncStandby != "node3" {
		t.Fatalf("the synchronous standby changed when node2 joined: %+v", v.Sync)
	}

	// synchronous_mode_strict, set before the failover: node3 promotes
	// with commits already waiting for a standby.
	v := tc.View()
	dc := v.Config
	dc.SynchronousModeStrict = true
	if err := node1.D.SetConfig(ctx, dc, v.ConfigRevision); err != nil {
		t.Fatal(err)
	}
	node1.Kill9()
	seen := map[string]bool{}
	tc.WaitFor(90*time.Second, "node3 leads after node1 died", func() string {
		v := tc.View()
		if v.Leader != "" {
			seen[v.Leader] = true
		}
		if seen["node2"] {
			t.Fatalf("node2, not the synchronous standby, took the leader key")
		}
		if v.Leader != "node3" {
			return "leader " + v.Leader
		}
		m, ok := v.Member("node3")
		if !ok || m.Role != "primary" {
			return "node3 not yet primary"
		}
		return ""
	})
	if got := node3.Count("sync_probe"); got != 100 {
		t.Fatalf("node3 has %d of the 100 rows committed on node1", got)
	}
	// The new leader picks node2 as its synchronous standby.
	tc.WaitFor(60*time.Second, "node2 confirmed as node3's synchronous standby", func() string {
		v := tc.View()
		if v.Sync == nil || v.Sync.Leader != "node3" || v.Sync.SyncStandby != "node2" {
			return fmt.Sprintf("sync key %+v", v.Sync)
		}
		return ""
	})

	// With node2 gone too, strict mode keeps commits waiting ('*')
	// instead of going asynchronous.
	node2.Kill9()
	tc.WaitFor(30*time.Second, "strict mode without a standby", func() string {
		if s := node3.Value(ctx, "SHOW synchronous_standby_names"); s != "*" {
			return "synchronous_standby_names = " + s
		}
		return ""
	})
	c, err := node3.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	defer wcancel()
	start := time.Now()
	if _, err := c.Exec(wctx, "INSERT INTO sync_probe VALUES (0)"); err == nil {
		t.Fatalf("a commit returned after %v with no synchronous standby in strict mode", time.Since(start))
	}
}

// TestSynchronousNodeCount: synchronous_node_count 2 keeps both replicas
// synchronous (FIRST 2 in synchronous_standby_names, both named in the
// sync key once Postgres reports them sync), and setting it back to 1
// narrows the key before the standby set shrinks.
func TestSynchronousNodeCount(t *testing.T) {
	pgtest.RequireUser(t)
	tc := daemontest.New(t, 3, daemontest.Options{Edit: func(i int, c *config.Config) {
		c.Bootstrap.DCS.SynchronousMode = true
		c.Bootstrap.DCS.SynchronousNodeCount = 2
	}})
	for _, n := range tc.Nodes {
		n.Start()
	}
	lead := tc.WaitHealthy(3 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var others []string
	for _, n := range tc.Nodes {
		if n != lead {
			others = append(others, n.Name)
		}
	}
	wantKey := strings.Join(others, ",")
	tc.WaitFor(60*time.Second, "two synchronous standbys", func() string {
		v := tc.View()
		if v.Sync == nil || v.Sync.SyncStandby != wantKey {
			return fmt.Sprintf("sync key %+v, want %s", v.Sync, wantKey)
		}
		if s := lead.Value(ctx, "SHOW synchronous_standby_names"); !strings.HasPrefix(s, "FIRST 2 (") {
			return "synchronous_standby_names = " + s
		}
		return ""
	})
	v := tc.View()
	dc := v.Config
	dc.SynchronousNodeCount = 1
	if err := lead.D.SetConfig(ctx, dc, v.ConfigRevision); err != nil {
		t.Fatal(err)
	}
	tc.WaitFor(60*time.Second, "one synchronous standby", func() string {
		v := tc.View()
		if v.Sync == nil || len(v.Sync.Standbys()) != 1 {
			return fmt.Sprintf("sync key %+v", v.Sync)
		}
		if s := lead.Value(ctx, "SHOW synchronous_standby_names"); !strings.HasPrefix(s, "FIRST 1 (") {
			return "synchronous_standby_names = " + s
		}
		return ""
	})
}
