package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestLaggingAndNoFailoverNeverPromoted: node2 is tagged nofailover and
// node3 lags more than maximum_lag_on_failover behind the last leader
// optime. When the leader (node1) is killed, neither may take the key.
// When node1 comes back it leads again and node2 follows it.
//
// It runs on a 3-member cluster of Debian's etcd binary, and ends with a
// replica whose data directory is gone: it re-clones.
func TestLaggingAndNoFailoverNeverPromoted(t *testing.T) {
	endpoints := pgtest.StartEtcdBinaryCluster(t, 3).Endpoints()
	tc := daemontest.New(t, 3, daemontest.Options{Endpoints: endpoints, Edit: func(i int, c *config.Config) {
		if i == 1 {
			c.Tags.NoFailover = true
		}
	}})
	n1, n2, n3 := tc.Nodes[0], tc.Nodes[1], tc.Nodes[2]
	n1.Start()
	tc.WaitHealthy(2*time.Minute, "node1")
	n2.Start()
	n3.Start()
	tc.WaitHealthy(3*time.Minute, "node1", "node2", "node3")

	// Cut node3's WAL stream (its daemon keeps publishing its position).
	n3.Exec("ALTER SYSTEM SET primary_conninfo = ''")
	n3.Exec("SELECT pg_reload_conf()")
	tc.WaitFor(30*time.Second, "node3 stops streaming", func() string {
		if m, ok := tc.View().Member("node3"); !ok || m.ReplicationState == "streaming" {
			return "still streaming"
		}
		return ""
	})
	n1.Exec("CREATE TABLE big (id int, pad text)")
	n1.Exec("INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 4000) g")
	n1.Exec("SELECT pg_switch_wal()")
	maxLag := int64(daemontest.DCS().MaximumLagOnFailover)
	tc.WaitFor(30*time.Second, "leader optime published, node2 caught up, node3 behind", func() string {
		v := tc.View()
		m2, _ := v.Member("node2")
		m3, _ := v.Member("node3")
		switch {
		case v.Status.Optime-m3.XLogLocation <= maxLag:
			return fmt.Sprintf("node3 only %d bytes behind optime %d", v.Status.Optime-m3.XLogLocation, v.Status.Optime)
		case m2.XLogLocation < v.Status.Optime:
			return fmt.Sprintf("node2 at %d < optime %d", m2.XLogLocation, v.Status.Optime)
		}
		return ""
	})

	n1.Kill9()
	// Three ttls: the lease expires within one; nobody may take the key.
	end := time.Now().Add(3 * daemontest.DCS().TTL.D())
	sawExpiry := false
	sample := time.NewTicker(200 * time.Millisecond) // a sample every 200 ms over the whole window
	defer sample.Stop()
	for ; time.Now().Before(end); <-sample.C {
		v := tc.View()
		if v.Leader != "" && v.Leader != "node1" {
			t.Fatalf("%s took the leader key (node2 is nofailover, node3 lags)", v.Leader)
		}
		if v.Leader == "" {
			sawExpiry = true
		}
		for _, n := range []*daemontest.Node{n2, n3} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if n.Writable(ctx, "big") {
				cancel()
				t.Fatalf("%s accepts writes", n.Name)
			}
			cancel()
		}
	}
	if !sawExpiry {
		t.Fatal("node1's leader key never expired")
	}

	// node1 restarts: it is the most advanced eligible member and leads again.
	n1.Start()
	tc.WaitHealthy(2*time.Minute, "node1", "node2")
	if k := n2.Count("big"); k != 4000 {
		t.Fatalf("node2 has %d rows of big, want 4000", k)
	}

	// node3's data directory is lost: it re-clones from the leader and
	// streams again with every row.
	n3.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n3.PG.Instance.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	n3.Start()
	tc.WaitHealthy(2*time.Minute, "node1", "node2", "node3")
	tc.WaitFor(30*time.Second, "node3 has every row", func() string {
		if k := n3.Count("big"); k != 4000 {
			return fmt.Sprintf("%d rows", k)
		}
		return ""
	})
}
