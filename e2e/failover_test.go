package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/daemon/daemontest"
)

// TestBootstrapReplicateKillRejoin: three daemons bootstrap one cluster
// (exactly one initdb), rows replicate, kill -9 of the leader's daemon and
// Postgres makes another node primary that accepts writes, and the killed
// node, restarted, rejoins as a replica with every row.
func TestBootstrapReplicateKillRejoin(t *testing.T) {
	tc := daemontest.New(t, 3, daemontest.Options{})
	for _, n := range tc.Nodes {
		n.Start()
	}
	lead := tc.WaitHealthy(3 * time.Minute)
	t.Logf("bootstrapped: leader %s", lead.Name)
	if v := tc.View(); v.Initialize == "" || v.Bootstrapping {
		t.Fatalf("initialize key after bootstrap = %q (bootstrapping %v)", v.Initialize, v.Bootstrapping)
	}

	tc.WaitFor(30*time.Second, "one active replication slot per replica on the leader", func() string {
		if k := lead.Count("pg_replication_slots WHERE active AND slot_type = 'physical'"); k != 2 {
			return fmt.Sprintf("%d active slots", k)
		}
		return ""
	})
	lead.Exec("CREATE TABLE rows (id serial PRIMARY KEY, node text)")
	for i := 0; i < 100; i++ {
		lead.Exec("INSERT INTO rows (node) VALUES ($1)", lead.Name)
	}
	for _, n := range tc.Nodes {
		tc.WaitFor(30*time.Second, n.Name+" has 100 rows", func() string {
			if k := n.Count("rows"); k != 100 {
				return fmt.Sprintf("%d rows", k)
			}
			return ""
		})
	}

	killed := time.Now()
	lead.Kill9()
	var next *daemontest.Node
	tc.WaitFor(60*time.Second, "a new writable primary", func() string {
		v := tc.View()
		if v.Leader == "" || v.Leader == lead.Name {
			return "leader " + v.Leader
		}
		next = tc.ByName(v.Leader)
		if next.Count("rows") < 0 {
			return "new leader not answering"
		}
		return ""
	})
	tc.WaitFor(30*time.Second, next.Name+" accepts writes", func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if !next.Writable(ctx, "rows") {
			return "write failed"
		}
		return ""
	})
	t.Logf("failover to %s: writes again %.1fs after kill -9", next.Name, time.Since(killed).Seconds())
	for i := 0; i < 49; i++ {
		next.Exec("INSERT INTO rows (node) VALUES ($1)", next.Name)
	}
	want := next.Count("rows")
	if want != 150 {
		t.Fatalf("rows on the new leader = %d, want 150", want)
	}

	lead.Start()
	tc.WaitHealthy(3*time.Minute, "node1", "node2", "node3")
	for _, n := range tc.Nodes {
		tc.WaitFor(60*time.Second, n.Name+" has every row", func() string {
			if k := n.Count("rows"); k != want {
				return fmt.Sprintf("%d rows, want %d", k, want)
			}
			return ""
		})
	}
	if v := tc.View(); v.Leader != next.Name {
		t.Fatalf("leader changed to %s after the old leader rejoined", v.Leader)
	}

	// The leader's daemon alone dies and is back within the ttl: it adopts
	// its running Postgres and its leader key; no failover, no new timeline.
	before, _ := tc.View().Member(next.Name)
	next.KillDaemon()
	next.Start()
	tc.WaitFor(30*time.Second, next.Name+" leads again with a lease of its own", func() string {
		if !next.D.LoopInfo().IsLeader {
			return "not leader yet"
		}
		return ""
	})
	v := tc.View()
	if m, _ := v.Member(next.Name); v.Leader != next.Name || m.Timeline != before.Timeline {
		t.Fatalf("after a daemon restart: leader %s, timeline %d (was %s on %d)", v.Leader, m.Timeline, next.Name, before.Timeline)
	}
	next.Exec("INSERT INTO rows (node) VALUES ($1)", next.Name)
	if k := next.Count("rows"); k != want+1 {
		t.Fatalf("%s has %d rows after a write, want %d", next.Name, k, want+1)
	}

	// Postgres crash with the daemon alive: restarted in place, same leader.
	crashed := time.Now()
	if err := next.PG.Instance.Kill(); err != nil {
		t.Fatal(err)
	}
	tc.WaitFor(30*time.Second, next.Name+" writable again after its postgres crashed", func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if !next.Writable(ctx, "rows") {
			return "not writable"
		}
		return ""
	})
	t.Logf("postgres crash on the leader: writes again %.1fs later", time.Since(crashed).Seconds())
	if v := tc.View(); v.Leader != next.Name {
		t.Fatalf("leader %s after a postgres crash on %s: want a restart in place", v.Leader, next.Name)
	}

	// Clean shutdown of the leader's daemon hands over well before a ttl.
	stopped := time.Now()
	next.Stop()
	tc.WaitFor(daemontest.DCS().TTL.D()+4*time.Second, "another leader after a clean shutdown", func() string {
		v := tc.View()
		if v.Leader == "" || v.Leader == next.Name {
			return "leader " + v.Leader
		}
		if m, ok := v.Member(v.Leader); !ok || m.Role != cluster.RolePrimary {
			return "new leader not primary yet"
		}
		return ""
	})
	t.Logf("clean shutdown handover took %.1fs", time.Since(stopped).Seconds())
}
