package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon/daemontest"
)

// TestCascadeAndSlots: node3 tagged replicatefrom node2 streams from
// node2, which keeps its slot; the leader keeps slots only for the
// replicas that stream from it, plus the dynamic config's permanent
// slots; a slot the operator made is never dropped, a slot pgha made for
// a member that left is.
func TestCascadeAndSlots(t *testing.T) {
	tc := daemontest.New(t, 3, daemontest.Options{Edit: func(i int, c *config.Config) {
		if i == 2 {
			c.Tags.ReplicateFrom = "node2"
		}
		c.Tags.Other = map[string]any{"datacenter": fmt.Sprintf("dc%d", i+1)}
		c.PostgreSQL.Parameters["wal_level"] = "logical" // for the permanent logical slot
	}})
	tc.Nodes[0].Start()
	lead := tc.WaitHealthy(2*time.Minute, "node1")
	tc.Nodes[1].Start()
	tc.WaitHealthy(2*time.Minute, "node1", "node2")
	tc.Nodes[2].Start()
	tc.WaitHealthy(3 * time.Minute)
	n2, n3 := tc.Nodes[1], tc.Nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	slots := func(n *daemontest.Node) []string {
		s := n.Value(ctx, "SELECT coalesce(string_agg(slot_name, ',' ORDER BY slot_name), '') FROM pg_replication_slots")
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	tc.WaitFor(60*time.Second, "node3 streams from node2 through its slot", func() string {
		if got := n2.Value(ctx, "SELECT coalesce(string_agg(application_name, ','), '') FROM pg_stat_replication"); got != "node3" {
			return "node2 sends WAL to [" + got + "]"
		}
		if got := slots(n2); !slices.Equal(got, []string{"node3"}) {
			return fmt.Sprintf("node2 has slots %v", got)
		}
		if got := slots(lead); !slices.Equal(got, []string{"node2"}) {
			return fmt.Sprintf("leader has slots %v, want only node2's", got)
		}
		return ""
	})
	// The member key carries the other tags.
	if m, _ := tc.View().Member("node3"); m.Tags.Other["datacenter"] != "dc3" || m.Tags.ReplicateFrom != "node2" {
		t.Fatalf("node3's tags in etcd: %+v", m.Tags)
	}
	// Rows written on the leader reach node3 through node2.
	lead.Exec("CREATE TABLE cascade_probe (id int)")
	lead.Exec("INSERT INTO cascade_probe VALUES (1)")
	tc.WaitFor(30*time.Second, "node3 replays the leader's rows", func() string {
		if k := n3.Count("cascade_probe"); k != 1 {
			return fmt.Sprintf("%d rows", k)
		}
		return ""
	})

	// Permanent and ignored slots; an operator's slot stays.
	lead.Exec("SELECT pg_create_physical_replication_slot('operator_slot')")
	v := tc.View()
	dc := v.Config
	dc.Slots = map[string]config.Slot{"archiver": {Type: "physical"}, "cdc": {Type: "logical", Database: "postgres", Plugin: "test_decoding"}}
	if err := lead.D.SetConfig(ctx, dc, v.ConfigRevision); err != nil {
		t.Fatal(err)
	}
	want := []string{"archiver", "cdc", "node2", "operator_slot"}
	tc.WaitFor(60*time.Second, "permanent slots on the leader", func() string {
		if got := slots(lead); !slices.Equal(got, want) {
			return fmt.Sprintf("leader has %v, want %v", got, want)
		}
		return ""
	})
	// Dropping the permanent slots from the config drops them (pgha made
	// them); the operator's slot stays.
	v = tc.View()
	dc = v.Config
	dc.Slots = nil
	if err := lead.D.SetConfig(ctx, dc, v.ConfigRevision); err != nil {
		t.Fatal(err)
	}
	tc.WaitFor(90*time.Second, "permanent slots dropped, the operator's kept", func() string {
		if got := slots(lead); !slices.Equal(got, []string{"node2", "operator_slot"}) {
			return fmt.Sprintf("leader has %v", got)
		}
		return ""
	})
}
