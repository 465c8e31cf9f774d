package leader

import (
	"errors"
	"strings"
	"testing"
)

// divergedLeader builds the state after a failover in which the old
// leader a wrote WAL nobody received before it died: b leads on
// timeline 2, c follows it, a's daemon is down and its Postgres stopped
// (crashed) with WAL past b's fork.
func divergedLeader(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a := w.m("a")
	for _, n := range []string{"b", "c"} {
		w.m(n).pg.set(func(p *fakePG) { p.hold = true })
	}
	mustWrite(t, a.pg, 800)
	for _, n := range []string{"b", "c"} {
		w.m(n).pg.set(func(p *fakePG) { p.hold = false })
	}
	w.kill("a")
	a.pg.crash()
	w.advance(w.cfg.TTL.D())
	expect(t, "b", w.round("b")["b"], Acquire, "")
	w.settle("b leads", func() string { return w.healthy("b", 2) })
	if fork := w.view().History[0].LSN; a.pg.state().End <= fork {
		t.Fatalf("test setup: a (%d) is not past the fork (%d)", a.pg.state().End, fork)
	}
	return w
}

// TestSequenceRewindFailsThenReclone: the old leader's pg_rewind fails;
// the failure is remembered and the next cycle re-clones it (stop, wipe,
// clone, start) from the new leader.
func TestSequenceRewindFailsThenReclone(t *testing.T) {
	w := divergedLeader(t)
	a := w.m("a")
	sysid := a.pg.state().SysID
	a.pg.set(func(p *fakePG) {
		p.fail["rewind"] = errors.New("pg_rewind: could not find common ancestor of the source and target cluster's timelines")
	})
	w.start("a")
	tn := w.round("a")["a"]
	if tn.Kind != Rewind || !strings.Contains(tn.Err, "will re-clone") {
		t.Fatalf("a decided %s, want a failed rewind", tn)
	}
	if s := a.pg.state(); s.Running || !s.Initialized {
		t.Fatalf("after the failed rewind: %+v", s)
	}
	a.pg.set(func(p *fakePG) { delete(p.fail, "rewind") })
	mark := len(w.eventLog())
	expect(t, "a", w.round("a")["a"], Reclone, "b")
	at := mark
	for _, e := range []string{"a: pg stop fast", "a: pg wipe", "a: pg clone b", "a: pg start"} {
		if at = w.eventIndex(e, at); at < 0 {
			t.Fatalf("re-clone: %q missing or out of order", e)
		}
	}
	w.settle("a rejoined", func() string { return w.healthy("b", 2) })
	if s := a.pg.state(); s.SysID != sysid || a.pg.called("rewind") != 1 {
		t.Fatalf("after the re-clone: %+v, %d rewinds", s, a.pg.called("rewind"))
	}
	if a.loop.mem.RewindFailed {
		t.Fatal("the re-clone did not clear the rewind failure")
	}
}

// TestSequenceReplicaPastForkIsRewound: c received WAL from the old
// leader that b, the new one, never had: c's REST API was unreachable
// and its member key a cycle old, so b won the election. c cannot
// stream from b's timeline and is rewound onto it.
func TestSequenceReplicaPastForkIsRewound(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a, b, c := w.m("a"), w.m("b"), w.m("c")
	c.apiDown.Store(true)
	b.pg.set(func(p *fakePG) { p.hold = true })
	mustWrite(t, a.pg, 600)
	w.net.replicate() // c receives, b does not; c has not cycled since
	b.pg.set(func(p *fakePG) { p.hold = false })
	w.kill("a")
	a.pg.crash()
	w.advance(w.cfg.TTL.D())

	if ck, _ := w.view().Member("c"); ck.XLogLocation >= c.pg.state().End {
		t.Fatalf("test setup: c's member key (%d) is not behind its server (%d)", ck.XLogLocation, c.pg.state().End)
	}
	expect(t, "b", w.cycle("b"), Acquire, "")
	fork := w.view().History[0].LSN
	if c.pg.state().End <= fork {
		t.Fatalf("test setup: c (%d) is not past b's fork (%d)", c.pg.state().End, fork)
	}
	w.tick()
	if s := c.pg.state(); s.StreamsFrom != "" || s.Timeline != 1 {
		t.Fatalf("c streams although it went past the fork: %+v", s)
	}
	tn := w.cycle("c")
	expect(t, "c", tn, Rewind, "b")
	if !strings.Contains(tn.Why, "replayed past") {
		t.Fatalf("c rewound for another reason: %s", tn.Why)
	}
	w.settle("c follows b", func() string { return w.healthy("b", 2) })
	if s := c.pg.state(); s.Upstream != "b" || c.pg.called("rewind") != 1 {
		t.Fatalf("c after the rewind: %+v", s)
	}
}

// TestSequenceRecloneNeedsSource: a re-clone whose source cannot be
// reached stops and removes nothing; it waits until the source answers.
func TestSequenceRecloneNeedsSource(t *testing.T) {
	w := divergedLeader(t)
	a, b := w.m("a"), w.m("b")
	a.pg.set(func(p *fakePG) {
		p.fail["rewind"] = errors.New("pg_rewind: could not find common ancestor of the source and target cluster's timelines")
	})
	w.start("a")
	if tn := w.round("a")["a"]; tn.Kind != Rewind {
		t.Fatalf("a decided %s, want a failed rewind", tn)
	}
	b.pg.set(func(p *fakePG) { p.running = false }) // b's server is down; its key stays a moment
	tn := w.round("a")["a"]
	if tn.Kind != Reclone || !strings.Contains(tn.Err, "nothing stopped or removed") {
		t.Fatalf("a decided %s, want a re-clone refused for want of a source", tn)
	}
	if s := a.pg.state(); !s.Initialized || a.pg.called("wipe") != 0 {
		t.Fatalf("a's data directory went while its source was down: %+v", s)
	}
}
