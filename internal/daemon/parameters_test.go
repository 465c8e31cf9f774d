package daemon_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestClusterParameters: postgresql.parameters in etcd's config key reach
// every node with a reload; the node file's parameters win (except the
// ones a standby needs at least as high as its primary's); a parameter
// that needs a restart shows as pending_restart until the restart; the
// replica keeps streaming through the rewrite of its configuration;
// settings Postgres rejects are dropped instead of breaking the restart.
func TestClusterParameters(t *testing.T) {
	pgtest.RequireUser(t)
	tc := daemontest.New(t, 2, daemontest.Options{Edit: func(i int, c *config.Config) {
		if i == 1 {
			c.PostgreSQL.Parameters["maintenance_work_mem"] = "64MB"
		}
	}})
	tc.Nodes[0].Start()
	tc.WaitHealthy(2*time.Minute, "node1")
	tc.Nodes[1].Start()
	lead := tc.WaitHealthy(3 * time.Minute)
	var rep *daemontest.Node
	for _, n := range tc.Nodes {
		if n != lead {
			rep = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	v := tc.View()
	dc := v.Config
	dc.PostgreSQL.Parameters = map[string]any{"work_mem": "8MB", "maintenance_work_mem": "128MB", "max_locks_per_transaction": 128,
		"max_connections": 60, // the node files say 50: the cluster wins for this one
		// Typos Postgres rejects are dropped with a warning, so that the
		// rest applies and the restart below works.
		"temp_buffers": "lots", "no_such_setting": 1}
	if err := lead.D.SetConfig(ctx, dc, v.ConfigRevision); err != nil {
		t.Fatal(err)
	}
	show := func(n *daemontest.Node, name string) string {
		return n.Value(ctx, "SELECT current_setting($1)", name)
	}
	want := []struct {
		n          *daemontest.Node
		name, want string
	}{
		{lead, "work_mem", "8MB"}, {rep, "work_mem", "8MB"},
		{lead, "maintenance_work_mem", "128MB"}, {rep, "maintenance_work_mem", "64MB"},
	}
	tc.WaitFor(30*time.Second, "cluster parameters applied with a reload", func() string {
		for _, w := range want {
			if got := show(w.n, w.name); got != w.want {
				return fmt.Sprintf("%s: %s = %s, want %s", w.n.Name, w.name, got, w.want)
			}
		}
		v := tc.View()
		for _, n := range tc.Nodes {
			if m, ok := v.Member(n.Name); !ok || !m.PendingRestart {
				return n.Name + " does not report pending_restart (max_locks_per_transaction)"
			}
		}
		return ""
	})
	// The node file wins over the cluster: node2 keeps 64MB.
	if got := show(rep, "maintenance_work_mem"); got != "64MB" {
		t.Fatalf("%s: maintenance_work_mem = %s, want the node file's 64MB", rep.Name, got)
	}
	// The replica still follows the leader after its configuration was rewritten.
	lead.Exec("CREATE TABLE params_probe (id int)")
	lead.Exec("INSERT INTO params_probe VALUES (1)")
	tc.WaitFor(30*time.Second, "replication after the rewrite", func() string {
		if got := rep.Count("params_probe"); got != 1 {
			return fmt.Sprintf("%s has %d rows", rep.Name, got)
		}
		return ""
	})
	if err := lead.D.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	tc.WaitFor(30*time.Second, "max_locks_per_transaction after the restart", func() string {
		if got := show(lead, "max_locks_per_transaction"); got != "128" {
			return "max_locks_per_transaction = " + got
		}
		if got := show(lead, "max_connections"); got != "60" {
			return "max_connections = " + got + ", want the cluster's 60 over the node file's"
		}
		if m, ok := tc.View().Member(lead.Name); !ok || m.PendingRestart {
			return lead.Name + " still reports pending_restart"
		}
		return ""
	})
	// A node that starts again gets the cluster's settings in its first
	// configuration (the standby needs max_connections >= the primary's).
	rep.Stop()
	rep.Start()
	tc.WaitHealthy(2 * time.Minute)
	tc.WaitFor(30*time.Second, rep.Name+" restarted with the cluster's settings", func() string {
		if got := show(rep, "max_connections"); got != "60" {
			return "max_connections = " + got
		}
		if m, ok := tc.View().Member(rep.Name); !ok || m.PendingRestart {
			return rep.Name + " reports pending_restart after its start"
		}
		return ""
	})
}
