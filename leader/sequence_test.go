package leader

import (
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
)

// Whole HA sequences on a world (world_test.go): each test drives the
// members' cycles in an order it chooses and asserts what each decided
// and what the cluster became. They run in the fast tier: no Postgres,
// no etcd, no real waits.

func expect(t *testing.T, who string, got turn, kind Kind, target string) {
	t.Helper()
	if got.Kind != kind || got.Target != target {
		t.Fatalf("%s decided %s, want %s %q", who, got, kind, target)
	}
	if got.Err != "" {
		t.Fatalf("%s: %s failed: %s", who, got.Kind, got.Err)
	}
}

func expectWhy(t *testing.T, who string, got turn, kind Kind, why string) {
	t.Helper()
	if got.Kind != kind || !strings.Contains(got.Why, why) {
		t.Fatalf("%s decided %s, want %s because %q", who, got, kind, why)
	}
}

// TestSequenceBootstrap: three empty members; the first to cycle wins
// the initialize race and runs initdb (a member that cycles meanwhile
// waits), takes the leader key and stores the system identifier; the
// others clone from it and stream.
func TestSequenceBootstrap(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.startAll()
	var during turn
	w.m("a").pg.set(func(p *fakePG) { p.onBootstrap = func() { during = w.cycle("b") } })

	expect(t, "a", w.cycle("a"), Bootstrap, "")
	expectWhy(t, "b while a runs initdb", during, Nothing, "another member is bootstrapping")
	v := w.view()
	a := w.m("a").pg.state()
	if v.Leader != "a" || v.Initialize == "" || v.Initialize != a.SysID || v.Bootstrapping {
		t.Fatalf("after bootstrap: leader %q, initialize %q (a's system %s), bootstrapping %v", v.Leader, v.Initialize, a.SysID, v.Bootstrapping)
	}
	if !a.Writable || a.Timeline != 1 {
		t.Fatalf("a after initdb: %+v", a)
	}
	if i, d := w.eventIndex("a: fence allows", 0), w.eventIndex("a: pg bootstrap", 0); i < 0 || i > d {
		t.Fatalf("initdb ran before the fence allowed writes (events %d, %d)", i, d)
	}

	for _, n := range []string{"b", "c"} {
		expect(t, n, w.cycle(n), Clone, "a")
		s := w.m(n).pg.state()
		if s.SysID != a.SysID || !s.Running || s.Writable || s.Upstream != "a" {
			t.Fatalf("%s after clone: %+v", n, s)
		}
	}
	// Next round: the WAL receivers connect; nobody acts any more.
	for n, tn := range w.round() {
		want := Nothing
		if n == "a" {
			want = Keep
		}
		if tn.Kind != want {
			t.Errorf("%s decided %s in a healthy cluster, want %s", n, tn, want)
		}
	}
	if why := w.healthy("a", 1); why != "" {
		t.Fatal(why)
	}
	// The leader keeps a slot for each replica (use_slots).
	if got := w.m("a").pg.slots.Members; strings.Join(got, ",") != "b,c" {
		t.Fatalf("leader's slots %v, want b,c", got)
	}
	if n := w.m("a").pg.called("bootstrap") + w.m("b").pg.called("bootstrap") + w.m("c").pg.called("bootstrap"); n != 1 {
		t.Fatalf("initdb ran %d times", n)
	}
}

// TestSequenceFailover: the leader node dies (daemon and Postgres); its
// key goes with its lease; the replica with the most WAL takes the key
// and promotes, the other follows it onto the new timeline; the old
// leader comes back and rewinds (it wrote WAL nobody received).
func TestSequenceFailover(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a, b, c := w.m("a"), w.m("b"), w.m("c")
	mustWrite(t, a.pg, 1000)
	w.tick()
	c.pg.set(func(p *fakePG) { p.hold = true }) // c stops receiving: b gets ahead
	mustWrite(t, a.pg, 500)
	w.tick()
	b.pg.set(func(p *fakePG) { p.hold = true }) // then nobody receives
	mustWrite(t, a.pg, 300)
	b.pg.set(func(p *fakePG) { p.hold = false })
	c.pg.set(func(p *fakePG) { p.hold = false })
	aEnd := a.pg.state().End
	w.kill("a")
	a.pg.crash()

	// While the key lives (ttl), the replicas wait for it.
	for n, tn := range w.round("b", "c") {
		if tn.Kind != Nothing {
			t.Fatalf("%s decided %s while the dead leader's key still lives", n, tn)
		}
	}
	w.advance(w.cfg.TTL.D())
	if v := w.view(); v.Leader != "" {
		t.Fatalf("leader key %q survived its lease", v.Leader)
	}
	// c has less WAL: it learns from b's REST API that b is ahead.
	expectWhy(t, "c", w.cycle("c"), Nothing, "b is a better candidate")
	bEnd := b.pg.state().End
	expect(t, "b", w.cycle("b"), Acquire, "")
	bs := b.pg.state()
	if !bs.Writable || bs.Timeline != 2 {
		t.Fatalf("b after acquire: %+v", bs)
	}
	v := w.view()
	if v.Leader != "b" || len(v.History) != 1 || v.History[0].Timeline != 1 || v.History[0].LSN != bEnd || v.History[0].NewLeader != "b" ||
		!strings.HasPrefix(v.History[0].Reason, "failover: ") {
		t.Fatalf("after b's promotion: leader %q, history %+v (b was at %d)", v.Leader, v.History, bEnd)
	}
	if i, p := w.eventIndex("b: fence allows", 0), w.eventIndex("b: pg promote", 0); i < 0 || i > p {
		t.Fatal("b promoted before the fence allowed writes")
	}
	expect(t, "c", w.round("c")["c"], Follow, "b")
	w.tick()
	if s := c.pg.state(); s.StreamsFrom != "b" || s.Timeline != 2 {
		t.Fatalf("c after follow: %+v", s)
	}

	// The old leader comes back: a crashed primary with WAL past the fork.
	if aEnd <= bEnd {
		t.Fatalf("test setup: a (%d) must be past b's fork (%d)", aEnd, bEnd)
	}
	w.start("a")
	expect(t, "a", w.round("a")["a"], Rewind, "b")
	if a.pg.called("rewind") != 1 {
		t.Fatal("a was not rewound")
	}
	w.settle("a rejoined", func() string { return w.healthy("b", 2) })
	if s := a.pg.state(); s.End < bEnd || s.Upstream != "b" {
		t.Fatalf("a after rejoining: %+v", s)
	}
}

func mustWrite(t *testing.T, p *fakePG, n int64) {
	t.Helper()
	if err := p.write(n); err != nil {
		t.Fatal(err)
	}
}

// TestSequenceSwitchover: a requested switchover a -> b. The leader
// checkpoints, pauses its pooler, announces the stop, stops cleanly and
// records where its WAL ended in the status key, then releases the key.
// b takes the key only once it has received that position; c waits for
// b; a rejoins without pg_rewind (clean stop).
func TestSequenceSwitchover(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a, b := w.m("a"), w.m("b")
	mustWrite(t, a.pg, 4096)
	w.tick()
	w.requestFailover(cluster.Failover{Leader: "a", Member: "b"})

	mark := len(w.eventLog())
	expect(t, "a", w.cycle("a"), Switchover, "b")
	order := []string{"a: pg checkpoint", "a: pooler paused", "a: pg stop fast", "etcd: delete leader"}
	at := mark
	for _, e := range order {
		i := w.eventIndex(e, at)
		if i < 0 {
			t.Fatalf("planned stop: %q missing or out of order (want %v)", e, order)
		}
		at = i
	}
	v := w.view()
	stoppedAt, _ := a.pg.StoppedAt(t.Context())
	if v.Leader != "" || v.Status.Optime != stoppedAt || stoppedAt == 0 {
		t.Fatalf("after the planned stop: leader %q, status optime %d, want the shutdown checkpoint %d", v.Leader, v.Status.Optime, stoppedAt)
	}
	if am, _ := v.Member("a"); am.State != cluster.StateStopped {
		t.Fatalf("a's member key after the stop: %s/%s", am.Role, am.State)
	}

	// Before the WAL sender's last message reaches b, b waits for it.
	expectWhy(t, "b", w.cycle("b"), Nothing, "switchover candidate waiting for a's last WAL")
	expectWhy(t, "c", w.cycle("c"), Nothing, "waiting for failover candidate b")
	expectWhy(t, "a", w.cycle("a"), Nothing, "stepped down in a switchover")
	w.tick()
	if got := b.pg.state().End; got < stoppedAt {
		t.Fatalf("b received up to %d, not a's last WAL %d", got, stoppedAt)
	}
	expect(t, "b", w.cycle("b"), Acquire, "")
	v = w.view()
	if v.Leader != "b" || v.Failover != nil || len(v.History) != 1 || !strings.HasPrefix(v.History[0].Reason, "switchover: ") {
		t.Fatalf("after b took over: leader %q, failover %+v, history %+v", v.Leader, v.Failover, v.History)
	}
	expect(t, "a", w.round("a")["a"], StartReplica, "b")
	expect(t, "c", w.round("c")["c"], Follow, "b")
	w.settle("switched over", func() string { return w.healthy("b", 2) })
	if n := a.pg.called("rewind"); n != 0 {
		t.Fatalf("a was rewound %d times after a clean stop", n)
	}
}

// TestSequenceSwitchoverRefused: a switchover to a replica that does not
// stream from the leader right now is refused and the request cleared;
// the leader keeps running.
func TestSequenceSwitchoverRefused(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	w.m("c").pg.set(func(p *fakePG) { p.hold = true })
	w.tick()
	w.requestFailover(cluster.Failover{Leader: "a", Member: "c"})
	expectWhy(t, "a", w.cycle("a"), ClearFailover, "candidate c is not a running replica eligible for promotion that streams from the leader")
	v := w.view()
	if v.Failover != nil || v.Leader != "a" || !w.m("a").pg.state().Writable || w.m("a").pg.called("stop") != 0 {
		t.Fatalf("after the refusal: failover %+v, leader %q, a %+v", v.Failover, v.Leader, w.m("a").pg.state())
	}
	expect(t, "a", w.cycle("a"), Keep, "")
}

// TestSequenceSwitchoverGivenUp: the candidate never receives the old
// leader's last WAL (its WAL receiver lost the connection as the leader
// stopped): it gives the switchover up after candidateWaitBound, and the
// old leader, which holds all of its WAL, wins the election that follows.
func TestSequenceSwitchoverGivenUp(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	w.requestFailover(cluster.Failover{Leader: "a", Member: "b"})
	expect(t, "a", w.cycle("a"), Switchover, "b")
	w.m("b").pg.set(func(p *fakePG) { p.hold = true })
	w.m("c").pg.set(func(p *fakePG) { p.hold = true })
	w.tick()
	expectWhy(t, "b", w.cycle("b"), Nothing, "switchover candidate waiting")
	w.advance(candidateWaitBound - time.Second)
	w.tick()
	expectWhy(t, "b", w.cycle("b"), Nothing, "switchover candidate waiting")
	w.advance(time.Second)
	w.tick()
	expectWhy(t, "b", w.cycle("b"), ClearFailover, "switchover given up")
	if w.view().Failover != nil {
		t.Fatal("the failover key survived the give-up")
	}
	// a starts read-only to show its position, then leads again.
	expect(t, "a", w.round("a")["a"], StartReplica, "")
	expectWhy(t, "b", w.round("b")["b"], Nothing, "a is a better candidate")
	expect(t, "a", w.round("a")["a"], Acquire, "")
	w.m("b").pg.set(func(p *fakePG) { p.hold = false })
	w.m("c").pg.set(func(p *fakePG) { p.hold = false })
	w.settle("a leads again", func() string { return w.healthy("a", 2) })
}
