package leader

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
)

// TestSequenceFencing: the leader's keepalives stop being acknowledged.
// It keeps its primary until the write deadline (last acknowledged
// keepalive + ttl - margin), then fences (pooler first, immediate stop)
// while etcd still holds its lease; only once the lease expired does a
// replica take over, with the fence's permission given before it
// promotes.
func TestSequenceFencing(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a := w.m("a")
	ttl := w.cfg.TTL.D()
	acked := a.lease.State().AckedSentAt
	a.lease.setDeaf(true)
	deadline := acked.Add(ttl - margin(ttl))

	w.advance(deadline.Sub(w.clock.Now()) - 500*time.Millisecond)
	expect(t, "a", w.cycle("a"), Keep, "")
	w.advance(500 * time.Millisecond)
	fencedBefore := a.fenced.Load()
	expectWhy(t, "a", w.cycle("a"), Fence, "cannot confirm the leader lease is alive")
	if s := a.pg.state(); s.Running || a.pg.called("stop") != 1 || a.fenced.Load() != fencedBefore+1 {
		t.Fatalf("after fencing: postgres %+v, stops %d, pooler paused %d times", s, a.pg.called("stop"), a.fenced.Load()-fencedBefore)
	}
	if i := w.eventIndex("a: pg stop immediate", 0); i < 0 || w.eventIndex("a: pooler paused", i-1) != i-1 {
		t.Fatal("fencing must pause the pooler, then stop postgres immediately")
	}
	if exp := w.etcd.expiresAt(a.lease.State().ID); !w.clock.Now().Before(exp) || w.view().Leader != "a" {
		t.Fatalf("a fenced at %s, but its lease expires at %s (leader %q): it must fence before", w.clock.Now(), exp, w.view().Leader)
	}
	// Still without acknowledgements, the leader would restart its
	// crashed-looking primary, but the permission is refused: no call to
	// the fence, no start.
	allows := len(a.fence.calls())
	if tn := w.cycle("a"); tn.Kind != Restart || !strings.Contains(tn.Err, "write deadline passed") {
		t.Fatalf("a decided %s, want a restart refused for the passed deadline", tn)
	}
	if n := len(a.fence.calls()); n != allows || a.pg.state().Running || a.pg.called("start") != 0 {
		t.Fatalf("a restarted its primary (%d permissions) after its write deadline", n-allows)
	}
	for n, tn := range w.round("b", "c") {
		if tn.Kind != Nothing {
			t.Fatalf("%s decided %s while a's key still lives", n, tn)
		}
	}

	w.advance(ttl - margin(ttl))
	if w.view().Leader != "" {
		t.Fatal("a's key outlived its lease")
	}
	mark := len(w.eventLog())
	expect(t, "b", w.round("b")["b"], Acquire, "")
	allow, promote := w.eventIndex("b: fence allows", mark), w.eventIndex("b: pg promote", mark)
	if allow < 0 || promote < 0 || allow > promote {
		t.Fatalf("b promoted without a permission first (events %d, %d)", allow, promote)
	}
	// a's keepalives are acknowledged again: its lease is gone, a new one
	// is granted, and it rejoins (rewind: an immediate stop is not clean).
	a.lease.setDeaf(false)
	expect(t, "a", w.round("a")["a"], Rewind, "b")
	w.settle("a rejoined", func() string { return w.healthy("b", 2) })
	if g := a.lease.State().Generation; g != 2 {
		t.Fatalf("a's lease generation %d, want a new grant (2)", g)
	}
}

// TestSequenceNoPermissionAfterDeadline: a replica whose own keepalives
// went unacknowledged past its write deadline decides to take the free
// key, but the permission is refused before anything is written: no
// key, no promotion, no call to the fence. Once its lease is regranted
// (and the backoff passed) it takes over.
func TestSequenceNoPermissionAfterDeadline(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	b := w.m("b")
	b.lease.setDeaf(true)
	w.kill("a")
	w.m("a").pg.crash()
	w.advance(w.cfg.TTL.D())
	if v := w.view(); v.Leader != "" {
		t.Fatal("the dead leader's key survived")
	}
	allows := len(b.fence.calls())
	tn := w.cycle("b")
	if tn.Kind != Acquire || !strings.Contains(tn.Err, "write deadline passed") {
		t.Fatalf("b decided %s, want a refused acquire", tn)
	}
	if w.view().Leader != "" || b.pg.state().Writable || len(b.fence.calls()) != allows {
		t.Fatalf("after the refusal: leader %q, b %+v, %d permissions", w.view().Leader, b.pg.state(), len(b.fence.calls())-allows)
	}
	b.lease.setDeaf(false)
	w.tick()
	expectWhy(t, "b", w.cycle("b"), Nothing, "backing off")
	w.advance(w.cfg.LoopWait.D())
	expect(t, "b", w.round("b")["b"], Acquire, "")
	w.settle("b leads", func() string { return w.healthy("b", 2) })
}

// TestSequenceFenceRefusesWrites: a member whose fence refuses writes
// (watchdog.mode required without a device) never leads: it wins the
// initialize race but gives it up before initdb, and another member
// bootstraps.
func TestSequenceFenceRefusesWrites(t *testing.T) {
	w := newWorld(t, nil, "a", "b")
	a := w.m("a")
	a.fence.refuse = fmt.Errorf("%w: watchdog required but /dev/watchdog is missing", ErrWritesRefused)
	w.startAll()
	tn := w.cycle("a")
	if tn.Kind != Bootstrap || !strings.Contains(tn.Err, "fence refused") {
		t.Fatalf("a decided %s, want a refused bootstrap", tn)
	}
	if v := w.view(); v.Initialize != "" || v.Bootstrapping || a.pg.called("bootstrap") != 0 {
		t.Fatalf("after the refusal: initialize %q (bootstrapping %v), initdb ran %d times", v.Initialize, v.Bootstrapping, a.pg.called("bootstrap"))
	}
	expect(t, "b", w.cycle("b"), Bootstrap, "")
	w.settle("b leads", func() string { return w.healthy("b", 1) })
}

// TestSequencePause: in maintenance mode a crashed leader's Postgres is
// left alone; out of it, it is restarted once; when it does not come
// back within master_start_timeout, the key is released at once and a
// replica takes over without waiting for the ttl.
func TestSequencePause(t *testing.T) {
	w := newWorld(t, nil, "a", "b", "c")
	w.bootstrap()
	a := w.m("a")
	w.editConfig(func(c *config.DynamicConfig) { c.Pause = true })
	a.pg.crash()
	for range 3 {
		expectWhy(t, "a", w.round("a")["a"], Nothing, "cluster paused")
	}
	if n := a.pg.called("start"); n != 0 || w.view().Leader != "a" {
		t.Fatalf("paused: postgres started %d times, leader %q", n, w.view().Leader)
	}

	w.editConfig(func(c *config.DynamicConfig) { c.Pause = false })
	expect(t, "a", w.round("a")["a"], Restart, "")
	expect(t, "a", w.round("a")["a"], Keep, "")
	if n := a.pg.called("start"); n != 1 || !a.pg.state().Writable {
		t.Fatalf("unpaused: postgres started %d times, now %+v", n, a.pg.state())
	}

	// It crashes again and does not come up within master_start_timeout.
	w.editConfig(func(c *config.DynamicConfig) { c.MasterStartTimeout = config.Duration(20 * time.Millisecond) })
	w.round("a")
	a.pg.crash()
	a.pg.set(func(p *fakePG) { p.startHangs = true })
	tn := w.round("a")["a"]
	if tn.Kind != Restart || !strings.Contains(tn.Err, "not accepting connections") {
		t.Fatalf("a decided %s, want a restart that times out", tn)
	}
	expect(t, "a", w.round("a")["a"], Release, "")
	if v := w.view(); v.Leader != "" {
		t.Fatalf("leader key %q after the release", v.Leader)
	}
	a.pg.set(func(p *fakePG) { p.startHangs = false })
	expect(t, "b", w.round("b")["b"], Acquire, "")
	w.settle("b leads", func() string { return w.healthy("b", 2) })
}

// TestSequenceBackoff: a clone that keeps failing is tried again after
// loop_wait, then after twice that, ... instead of at every cycle, and
// the identical error is logged once.
func TestSequenceBackoff(t *testing.T) {
	w := newWorld(t, nil, "a", "b")
	w.startAll()
	b := w.m("b")
	b.pg.set(func(p *fakePG) { p.fail["clone"] = errors.New("pg_basebackup: could not connect to server") })
	expect(t, "a", w.cycle("a"), Bootstrap, "")
	if tn := w.cycle("b"); tn.Kind != Clone || tn.Err == "" {
		t.Fatalf("b decided %s, want a failed clone", tn)
	}
	loopWait := w.cfg.LoopWait.D()
	// Each step: how long to wait, then how many clones b has tried.
	steps := []struct {
		wait  time.Duration
		tries int
	}{
		{0, 1}, {loopWait - time.Millisecond, 1}, {time.Millisecond, 2}, // 1st backoff: loop_wait
		{loopWait, 2}, {loopWait, 3}, // 2nd: twice that
		{3 * loopWait, 3}, {loopWait, 4}, // 3rd: four times
	}
	for i, s := range steps {
		w.advance(s.wait)
		tn := w.round("b")["b"]
		if got := b.pg.called("clone"); got != s.tries {
			t.Fatalf("step %d (%s later): %d clones, want %d (decided %s)", i, s.wait, got, s.tries, tn)
		}
	}
	if n := b.logs.count("ha action failed"); n != 1 {
		t.Fatalf("the same clone error was logged %d times, want once", n)
	}
	b.pg.set(func(p *fakePG) { delete(p.fail, "clone") })
	w.advance(8 * loopWait)
	expect(t, "b", w.round("b")["b"], Clone, "a")
	w.settle("b streams", func() string { return w.healthy("a", 1) })
}
