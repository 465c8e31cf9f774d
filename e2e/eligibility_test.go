package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
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
	tc := newClusterOn(t, endpoints, 3, false, func(i int, c *config.Config) {
		if i == 1 {
			c.Tags.NoFailover = true
		}
	})
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	n1.start()
	tc.waitHealthy(2*time.Minute, "node1")
	n2.start()
	n3.start()
	tc.waitHealthy(3*time.Minute, "node1", "node2", "node3")

	// Cut node3's WAL stream (its daemon keeps publishing its position).
	n3.exec("ALTER SYSTEM SET primary_conninfo = ''")
	n3.exec("SELECT pg_reload_conf()")
	tc.waitFor(30*time.Second, "node3 stops streaming", func() string {
		if m, ok := tc.view().Member("node3"); !ok || m.ReplicationState == "streaming" {
			return "still streaming"
		}
		return ""
	})
	n1.exec("CREATE TABLE big (id int, pad text)")
	n1.exec("INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 4000) g")
	n1.exec("SELECT pg_switch_wal()")
	maxLag := int64(testDCS().MaximumLagOnFailover)
	tc.waitFor(30*time.Second, "leader optime published, node2 caught up, node3 behind", func() string {
		v := tc.view()
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

	n1.kill9()
	// Three ttls: the lease expires within one; nobody may take the key.
	end := time.Now().Add(3 * testDCS().TTL.D())
	sawExpiry := false
	for time.Now().Before(end) {
		v := tc.view()
		if v.Leader != "" && v.Leader != "node1" {
			t.Fatalf("%s took the leader key (node2 is nofailover, node3 lags)", v.Leader)
		}
		if v.Leader == "" {
			sawExpiry = true
		}
		for _, n := range []*node{n2, n3} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if n.writable(ctx, "big") {
				cancel()
				t.Fatalf("%s accepts writes", n.name)
			}
			cancel()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !sawExpiry {
		t.Fatal("node1's leader key never expired")
	}

	// node1 restarts: it is the most advanced eligible member and leads again.
	n1.start()
	tc.waitHealthy(2*time.Minute, "node1", "node2")
	if k := n2.count("big"); k != 4000 {
		t.Fatalf("node2 has %d rows of big, want 4000", k)
	}

	// node3's data directory is lost: it re-clones from the leader and
	// streams again with every row.
	n3.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n3.pg.Instance.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	n3.start()
	tc.waitHealthy(2*time.Minute, "node1", "node2", "node3")
	tc.waitFor(30*time.Second, "node3 has every row", func() string {
		if k := n3.count("big"); k != 4000 {
			return fmt.Sprintf("%d rows", k)
		}
		return ""
	})
}
