package leader

import (
	"fmt"
	"slices"
	"testing"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

func syncKey(w *world) (leader string, standbys []string) {
	v := w.view()
	if v.Sync == nil {
		return "", nil
	}
	return v.Sync.Leader, v.Sync.Standbys()
}

// settleSync runs rounds until leader leads on timeline tl with standbys
// as its synchronous standbys in the sync key.
func settleSync(w *world, leader string, tl int64, standbys ...string) {
	w.t.Helper()
	w.settle(fmt.Sprintf("%s leads with %v as its synchronous standbys", leader, standbys), func() string {
		if why := w.healthy(leader, tl); why != "" {
			return why
		}
		if l, s := syncKey(w); l != leader || !slices.Equal(s, standbys) {
			return fmt.Sprintf("sync key %s/%v", l, s)
		}
		return ""
	})
}

// TestSequenceSynchronous: with synchronous_mode on, the leader names
// one streaming replica in synchronous_standby_names and in the sync key
// only once Postgres reports it sync. When the leader dies only that
// standby may take over, although the other replica would win an
// ordinary election (failover_priority).
func TestSequenceSynchronous(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	prio := 2
	w.m("c").tags = config.Tags{FailoverPriority: &prio}
	w.bootstrap()
	a := w.m("a")
	w.editConfig(func(c *config.DynamicConfig) { c.SynchronousMode = true })

	expect(t, "a", w.round("a")["a"], Keep, "")
	if l, s := syncKey(w); l != "a" || len(s) != 0 || !slices.Equal(a.pg.syncNames, []string{"b"}) {
		t.Fatalf("first cycle: sync key %s/%v, synchronous_standby_names %v; want the key to name no standby until b is sync, and b asked for", l, s, a.pg.syncNames)
	}
	expect(t, "a", w.round("a")["a"], Keep, "")
	if l, s := syncKey(w); l != "a" || !slices.Equal(s, []string{"b"}) {
		t.Fatalf("second cycle (b reported sync): sync key %s/%v, want a/[b]", l, s)
	}

	w.kill("a")
	a.pg.crash()
	w.advance(w.cfg.TTL.D())
	expectWhy(t, "c", w.round("c")["c"], Nothing, "synchronous mode: only b may take the leader key")
	expect(t, "b", w.round("b")["b"], Acquire, "")
	w.round("c")
	settleSync(w, "b", 2, "c")
}

// TestSequenceSynchronousNodeCount: synchronous_node_count 2 names both
// replicas; when one stops streaming the leader narrows the sync key
// before it changes synchronous_standby_names, and widens the key again
// only once the returning replica is reported sync.
func TestSequenceSynchronousNodeCount(t *testing.T) {
	w := newWorld(t, func(c *config.DynamicConfig) {
		c.SynchronousMode = true
		c.SynchronousNodeCount = 2
	}, "a", "b", "c")
	w.bootstrap()
	a, c := w.m("a"), w.m("c")
	w.settle("both replicas confirmed", func() string {
		if _, s := syncKey(w); !slices.Equal(s, []string{"b", "c"}) {
			return fmt.Sprintf("sync key names %v", s)
		}
		return ""
	})
	if !slices.Equal(a.pg.syncNames, []string{"b", "c"}) {
		t.Fatalf("synchronous_standby_names %v, want [b c]", a.pg.syncNames)
	}

	c.pg.set(func(p *fakePG) { p.hold = true })
	w.tick()
	mark := len(w.eventLog())
	expect(t, "a", w.cycle("a"), Keep, "")
	narrow := w.eventIndex(`etcd: put sync = {"leader":"a","sync_standby":"b"}`, mark)
	names := w.eventIndex("a: pg set_sync [b]", mark)
	if narrow < 0 || names < 0 || narrow > names {
		t.Fatalf("the sync key must be narrowed to b (event %d) before synchronous_standby_names drops c (event %d)", narrow, names)
	}

	c.pg.set(func(p *fakePG) { p.hold = false })
	w.tick()
	expect(t, "a", w.cycle("a"), Keep, "")
	if _, s := syncKey(w); !slices.Equal(s, []string{"b"}) || !slices.Equal(a.pg.syncNames, []string{"b", "c"}) {
		t.Fatalf("c back: sync key %v (want b until c is reported sync), names %v (want b,c)", s, a.pg.syncNames)
	}
	expect(t, "a", w.cycle("a"), Keep, "")
	if _, s := syncKey(w); !slices.Equal(s, []string{"b", "c"}) {
		t.Fatalf("c reported sync: sync key %v, want [b c]", s)
	}
	if m, _ := w.view().Member("c"); m.State != cluster.StateStreaming {
		t.Fatalf("c's member key: %s", m.State)
	}
}

// TestSequenceStandbyKeepsDataWhenLeaderVanishes: after a failover the
// synchronous standby streams the new timeline while its control file
// still names the old one (no restartpoint yet). When the new leader
// goes away in turn, the standby's WAL receiver stops and its status
// falls back to the control file's timeline. The standby must not take
// that for having stayed on the old timeline past the fork (which would
// rewind it, stop it, and re-clone it: the only node holding every
// acknowledged write wiped), but wait for the key to expire and take
// over. The fault suite found it (seed 5150, faults 24 and 26).
func TestSequenceStandbyKeepsDataWhenLeaderVanishes(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a, b, c := w.m("a"), w.m("b"), w.m("c")
	w.editConfig(func(c *config.DynamicConfig) { c.SynchronousMode = true })
	w.round("a")
	w.round("a")
	if _, s := syncKey(w); !slices.Equal(s, []string{"b"}) {
		t.Fatalf("test setup: sync standbys %v, want [b]", s)
	}
	w.kill("a")
	a.pg.crash()
	w.advance(w.cfg.TTL.D())
	expect(t, "b", w.round("b")["b"], Acquire, "")
	settleSync(w, "b", 2, "c")
	var ckpt int64
	c.pg.set(func(p *fakePG) { ckpt = p.data.checkpointTL })
	if s := c.pg.state(); s.Timeline != 2 || ckpt != 1 {
		t.Fatalf("test setup: c on timeline %d with its checkpoint on %d, want 2 and 1", s.Timeline, ckpt)
	}

	before := map[string]int{}
	ops := []string{"rewind", "wipe", "clone", "stop"}
	for _, op := range ops {
		before[op] = c.pg.called(op)
	}
	w.kill("b")
	b.pg.crash()
	w.tick()
	for i := 0; i < 3; i++ {
		if tn := w.round("c")["c"]; tn.Kind == Rewind || tn.Kind == Reclone {
			t.Fatalf("c decided %s while b's key was still there", tn)
		}
	}
	for _, op := range ops {
		if n := c.pg.called(op) - before[op]; n != 0 {
			t.Fatalf("c's Postgres saw %d %s while its leader was gone", n, op)
		}
	}
	w.advance(w.cfg.TTL.D())
	expect(t, "c", w.round("c")["c"], Acquire, "")
	if s := c.pg.state(); !s.Writable || s.Timeline != 3 {
		t.Fatalf("c after taking over: %+v", s)
	}
}
