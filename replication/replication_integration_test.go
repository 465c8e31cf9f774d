package replication_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/replication"
)

func insertRows(t *testing.T, n *pgtest.Node, from, to int) {
	t.Helper()
	n.Exec(t, "INSERT INTO items SELECT g, 'row ' || g FROM generate_series($1::int, $2::int) g", from, to)
}

// countRows counts items on n, retrying until want or 30 s pass (a
// replica may still be replaying).
func countRows(t *testing.T, n *pgtest.Node, want int) {
	t.Helper()
	var got int
	var err error
	if testkit.Poll(context.Background(), 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var c *pgx.Conn
		c, err = pgx.Connect(ctx, n.DSN(pgtest.SuperUser, "postgres"))
		if err == nil {
			err = c.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM items").Scan(&got, new(int))
			_ = c.Close(ctx)
		}
		return testkit.Missing(err == nil && got == want, "rows")
	}) != nil {
		t.Fatalf("%s: want %d rows in items, have %d (err %v)", n.Name, want, got, err)
	}
}

func replicationRow(st replication.Status, app string) (replication.ReplicationRow, bool) {
	for _, r := range st.Replication {
		if r.ApplicationName == app {
			return r, true
		}
	}
	return replication.ReplicationRow{}, false
}

// TestFailoverCycle walks a whole failover on real Postgres: init a
// primary, write, clone a replica, see it stream, promote it, rewind the
// old primary and make it follow, and find every row on both.
func TestFailoverCycle(t *testing.T) {
	ctx := testkit.Ctx(t, 4*time.Minute)
	a := pgtest.NewPrimaryNamed(t, "node_a")
	a.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, note text)")
	insertRows(t, a, 1, 1000)

	st, err := a.Instance.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.InRecovery || st.Timeline != 1 || st.SystemIdentifier == "" || st.WriteLSN == 0 {
		t.Fatalf("fresh primary status: %+v", st)
	}

	b := pgtest.NewReplica(t, a, "node_b")
	bst, err := b.Instance.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bst.SystemIdentifier != st.SystemIdentifier {
		t.Fatalf("replica system identifier %s, primary %s", bst.SystemIdentifier, st.SystemIdentifier)
	}
	if bst.SenderPort != a.Port {
		t.Fatalf("replica streams from port %d, want %d", bst.SenderPort, a.Port)
	}
	a.WaitFor(t, 30*time.Second, "showing node_b streaming in pg_stat_replication", func(s replication.Status) bool {
		r, ok := replicationRow(s, "node_b")
		return ok && r.State == "streaming"
	})
	insertRows(t, a, 1001, 2000)
	countRows(t, b, 2000)

	// Slots on the primary.
	if err := a.Instance.CreateSlot(ctx, "node_b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Instance.CreateSlot(ctx, "node_b"); err != nil {
		t.Fatalf("creating an existing slot again: %v", err)
	}
	slots, err := a.Instance.Slots(ctx)
	if err != nil || len(slots) != 1 || slots[0].Name != "node_b" || slots[0].Type != "physical" || slots[0].RestartLSN == 0 {
		t.Fatalf("slots %+v, %v", slots, err)
	}
	if err := a.Instance.CreateSlot(ctx, "Bad-Name"); err == nil {
		t.Fatal("slot name with capitals and dash accepted")
	}
	if err := a.Instance.DropSlot(ctx, "node_b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Instance.DropSlot(ctx, "node_b"); err != nil {
		t.Fatalf("dropping a missing slot: %v", err)
	}
	if slots, _ := a.Instance.Slots(ctx); len(slots) != 0 {
		t.Fatalf("slots after drop: %+v", slots)
	}

	// Failover: the old primary crashes, the replica is promoted and
	// takes writes the old primary never saw.
	insertRows(t, a, 2001, 2500)
	countRows(t, b, 2500)
	if err := a.Instance.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Instance.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	bst, err = b.Instance.Status(ctx)
	if err != nil || bst.InRecovery || bst.Timeline != 2 {
		t.Fatalf("promoted status %+v, %v", bst, err)
	}
	insertRows(t, b, 2501, 3000)

	// The old primary diverged (it was on timeline 1 past the switch
	// point, having crashed): rewind and follow.
	if err := a.Instance.Rewind(ctx, b.Primary()); err != nil {
		t.Fatal(err)
	}
	if !a.Instance.IsStandby() {
		t.Fatal("rewound node has no standby.signal")
	}
	if err := a.Instance.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a.WaitStreaming(t, 60*time.Second)
	insertRows(t, b, 3001, 3500)
	countRows(t, a, 3500)
	countRows(t, b, 3500)
	ast := a.WaitFor(t, 30*time.Second, "on timeline 2", func(s replication.Status) bool { return s.Timeline == 2 })
	if ast.SenderPort != b.Port || !ast.InRecovery {
		t.Fatalf("rewound node status %+v: want a replica streaming from port %d", ast, b.Port)
	}

	// Planned switchover back: stop the primary cleanly (its replica
	// receives every record), promote the replica, demote the old
	// primary, which follows without a rewind.
	if err := b.Instance.Stop(ctx, replication.StopFast); err != nil {
		t.Fatal(err)
	}
	ckpt, err := b.Instance.CheckpointLocation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.WaitFor(t, 30*time.Second, "past the old primary's shutdown checkpoint "+ckpt.String(), func(s replication.Status) bool {
		return s.ReplayLSN > ckpt
	})
	if err := a.Instance.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Instance.Demote(ctx, a.Primary()); err != nil {
		t.Fatal(err)
	}
	b.WaitStreaming(t, 60*time.Second)
	insertRows(t, a, 3501, 4000)
	countRows(t, b, 4000)
	countRows(t, a, 4000)
	bst = b.WaitFor(t, 30*time.Second, "on timeline 3", func(s replication.Status) bool { return s.Timeline == 3 })
	if bst.SenderPort != a.Port {
		t.Fatalf("demoted node streams from %d, want %d", bst.SenderPort, a.Port)
	}
}

// TestFollowWithoutRestart repoints a running replica at another
// upstream with Follow: the postmaster keeps its pid, the WAL receiver
// reconnects to the new sender, and new rows still arrive.
func TestFollowWithoutRestart(t *testing.T) {
	ctx := testkit.Ctx(t, 3*time.Minute)
	p := pgtest.NewPrimaryNamed(t, "follow_p")
	p.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, note text)")
	insertRows(t, p, 1, 100)
	r1 := pgtest.NewReplica(t, p, "follow_r1")
	r2 := pgtest.NewReplica(t, p, "follow_r2")
	before, err := r2.Instance.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.SenderPort != p.Port {
		t.Fatalf("r2 streams from %d, want %d", before.SenderPort, p.Port)
	}
	// Stream through a slot on r1 (cascading replicas may hold slots).
	if err := r1.Instance.CreateSlot(ctx, "follow_r2"); err != nil {
		t.Fatal(err)
	}
	up := r1.Primary()
	up.Slot = "follow_r2"
	if err := r2.Instance.Follow(ctx, up); err != nil {
		t.Fatal(err)
	}
	after := r2.WaitFor(t, 60*time.Second, "streaming from r1", func(s replication.Status) bool {
		return s.Receiver == "streaming" && s.SenderPort == r1.Port
	})
	if slots, err := r1.Instance.Slots(ctx); err != nil || len(slots) != 1 || !slots[0].Active {
		t.Fatalf("slot on r1 not in use: %+v, %v", slots, err)
	}
	if after.PID != before.PID {
		t.Fatalf("postmaster pid changed from %d to %d: Follow restarted the server", before.PID, after.PID)
	}
	r1.WaitFor(t, 30*time.Second, "serving r2", func(s replication.Status) bool {
		_, ok := replicationRow(s, "follow_r2")
		return ok
	})
	insertRows(t, p, 101, 200)
	countRows(t, r2, 200)

	// Restart gives a new postmaster that comes back as a replica.
	if err := r2.Instance.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := r2.WaitFor(t, 60*time.Second, "streaming after restart", func(s replication.Status) bool {
		return s.Receiver == "streaming" && s.SenderPort == r1.Port
	})
	if restarted.PID == after.PID {
		t.Fatalf("Restart kept pid %d", restarted.PID)
	}
	if err := r2.Instance.Stop(ctx, "sideways"); err == nil {
		t.Fatal("bad stop mode accepted")
	}

	// Wipe refuses a running server, then removes a stopped one so it
	// can be cloned again.
	if err := r2.Instance.Wipe(ctx); err == nil {
		t.Fatal("Wipe removed a running server's data directory")
	}
	if err := r2.Instance.Stop(ctx, replication.StopImmediate); err != nil {
		t.Fatal(err)
	}
	if err := r2.Instance.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	if r2.Instance.IsInitialized() {
		t.Fatal("data directory still initialized after Wipe")
	}
	if err := r2.Instance.CloneFrom(ctx, p.Primary()); err != nil {
		t.Fatal(err)
	}
	if err := r2.Instance.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r2.WaitStreaming(t, 60*time.Second)
	countRows(t, r2, 200)

	// Follow refuses a primary.
	if err := p.Instance.Follow(ctx, r1.Primary()); err == nil || !strings.Contains(err.Error(), "not a replica") {
		t.Fatalf("Follow on a primary: %v", err)
	}
}
