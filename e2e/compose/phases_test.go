package compose

import (
	"strings"
	"time"
)

// killLeader is docker kill of the leader's container (SIGKILL to pgha and
// Postgres alike). Writes through HAProxy must resume within ttl + 10 s
// and every acknowledged write must be on the new primary.
func (sc *scenario) killLeader(st clusterState) (killed string, after clusterState) {
	t, s := sc.t, sc.s
	old := st.leader
	if out, err := run("docker", "kill", s.container(old)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Measured from when docker kill returns: the container is dead then
	// (the command itself takes a moment, while writes still succeed).
	at := time.Now()
	s.waitFor(sc.ttl+60*time.Second, "writes through HAProxy after the kill", func() string {
		return ackedAfter([]*writer{sc.hw}, at, 1)
	})
	back := since(at)
	s.waitFor(60*time.Second, "writes through "+sc.via+"'s pooler after the kill", func() string {
		return ackedAfter([]*writer{sc.pw}, at, 1)
	})
	st = sc.waitState(60*time.Second, "a new leader", sc.via, func(c clusterState) bool {
		return c.leader != "" && c.leader != old
	})
	now := time.Now()
	sc.note("docker kill %s (leader): new leader %s; writes through HAProxy back %s after the kill; %s",
		old, st.leader, back, gaps(at, now, sc.hw, sc.pw))
	if g := sc.hw.longestGap(at, now); g > sc.ttl+10*time.Second {
		t.Errorf("writes through HAProxy stopped for %s after the leader's container was killed: want at most ttl (%s) + 10s", round(g), sc.ttl)
	}
	n := sc.checkAcked(st.leader, sc.writers)
	sc.note("no acknowledged write lost: all %d on the new primary %s", n, st.leader)
	return old, st
}

// restart is docker start of a stopped node's container: it must rejoin
// as a streaming replica (pghactl list).
func (sc *scenario) restart(node string) clusterState {
	at := time.Now()
	if out, err := run("docker", "start", sc.s.container(node)); err != nil {
		sc.t.Fatalf("%v\n%s", err, out)
	}
	st := sc.waitState(3*time.Minute, node+" streaming from the leader", sc.via, func(c clusterState) bool {
		return c.streamed[node] && c.leader != "" && c.leader != node
	})
	sc.note("docker start %s: a streaming replica again after %s: %s", node, since(at), st)
	return st
}

// streamingSync waits for a leader with a streaming synchronous standby.
func (sc *scenario) streamingSync() clusterState {
	return sc.waitState(60*time.Second, "a leader and a streaming synchronous standby", sc.via, func(c clusterState) bool {
		return c.leader != "" && c.sync != "" && c.streamed[c.sync]
	})
}

// stopLeader is docker stop of the leader's container, as an operator or
// an orchestrator does it: SIGTERM, and pgha hands the leader role over
// before it stops Postgres. The synchronous standby must take over with
// every acknowledged write.
func (sc *scenario) stopLeader() (stopped string, after clusterState) {
	t, s := sc.t, sc.s
	st := sc.streamingSync()
	from, to := st.leader, st.sync
	if from == sc.via {
		t.Fatalf("the pooler writer's node %s leads: this phase would stop it (%s)", from, st)
	}
	at := time.Now()
	if out, err := run("docker", "stop", "-t", "120", s.container(from)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	down := time.Now()
	st = sc.waitState(60*time.Second, "a new leader after docker stop "+from, sc.via, func(c clusterState) bool {
		return c.leader != "" && c.leader != from
	})
	if st.leader != to {
		t.Errorf("docker stop %s: %s took over, want the synchronous standby %s", from, st.leader, to)
	}
	s.waitFor(30*time.Second, "writes from both writers after docker stop "+from, func() string {
		return ackedAfter(sc.writers, down, 1)
	})
	now := time.Now()
	sc.note("docker stop %s (leader): stopped in %s, %s leads; %s", from, round(down.Sub(at)), st.leader, gaps(at, now, sc.hw, sc.pw))
	n := sc.checkAcked(st.leader, sc.writers)
	sc.note("no acknowledged write lost: all %d on %s", n, st.leader)
	return from, st
}

// switchover runs pghactl switchover inside the leader's container, to
// the synchronous standby, under a writer through each node's pooler
// (opened before). Through the candidate's and the third node's pooler a
// client must see a delay, never an error. Through the old leader's own
// pooler a statement in flight when its Postgres stops may fail (57P01 or
// a lost server connection: the client cannot know whether it committed,
// as with PgBouncer): at most one, as each writer has one statement at a
// time in flight.
func (sc *scenario) switchover() clusterState {
	t, s := sc.t, sc.s
	st := sc.streamingSync()
	from, to := st.leader, st.sync
	ws := []*writer{sc.pw}
	for _, m := range st.members {
		if m.Member != sc.via {
			ws = append(ws, newWriter("pooler-"+m.Member, s.hostPort(m.Member, 6432), sc.password))
		}
	}
	stop := startWriters(ws[1:]...)
	defer stop()
	s.waitFor(30*time.Second, "writes through every node's pooler", func() string {
		return ackedAfter(ws, time.Now().Add(-5*time.Second), 5)
	})

	at := time.Now()
	out, err := s.exec(from, nil, "pghactl", "switchover", "--leader", from, "--candidate", to, "--force")
	if err != nil {
		t.Fatalf("pghactl switchover in %s's container: %v\n%s", from, err, out)
	}
	st = sc.waitState(60*time.Second, to+" leading and "+from+" streaming from it", sc.via, func(c clusterState) bool {
		return c.leader == to && c.streamed[from]
	})
	done := time.Now()
	all := append([]*writer{sc.hw}, ws...)
	s.waitFor(30*time.Second, "writes from every writer after the switchover", func() string {
		return ackedAfter(all, done, 1)
	})
	stop()
	now := time.Now()
	sc.note("pghactl switchover %s -> %s: %s leading and %s streaming %s after the command; %s",
		from, to, to, from, round(done.Sub(at)), gaps(at, now, all...))
	for _, w := range ws {
		errs := w.errorsBetween(at, now)
		if w.name != "pooler-"+from {
			for _, e := range errs {
				t.Errorf("writer %s across the switchover: %s", w.name, e.msg)
			}
			continue
		}
		for _, e := range errs {
			if !strings.Contains(e.msg, "57P01") && !strings.Contains(e.msg, "server conn crashed") {
				t.Errorf("writer %s (the old leader's pooler) across the switchover: %s", w.name, e.msg)
			}
		}
		if len(errs) > 1 {
			t.Errorf("writer %s: %d errors across the switchover; one statement at a time can be in flight", w.name, len(errs))
		}
	}
	n := sc.checkAcked(to, all)
	sc.note("no acknowledged write lost: all %d on %s", n, to)
	return st
}

// stopEtcdLeader is docker stop of the container of etcd's leader: the
// remaining two members elect another, and the cluster must keep its
// primary (same leader, same timeline) for ttl + 5 s while both writers
// keep writing without an error.
func (sc *scenario) stopEtcdLeader() clusterState {
	t, s := sc.t, sc.s
	before := sc.waitState(30*time.Second, "a leader", sc.via, func(c clusterState) bool { return c.leader != "" })
	etcdLeader, err := s.etcdLeader()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if out, err := run("docker", "stop", "-t", "30", s.container(etcdLeader)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	hold := sc.ttl + 5*time.Second
	for end := at.Add(hold); time.Now().Before(end); {
		// An observation window, not a synchroniser: the leader must not
		// change at any point of it.
		if cur, err := s.state(sc.via); err == nil && cur.leader != "" && cur.leader != before.leader {
			t.Fatalf("with %s stopped, the leader changed from %s to %s", etcdLeader, before.leader, cur.leader)
		}
		time.Sleep(time.Second)
	}
	st := sc.waitState(30*time.Second, "the cluster's view with "+etcdLeader+" stopped", sc.via, func(c clusterState) bool {
		return c.leader != ""
	})
	now := time.Now()
	if st.leader != before.leader || st.timeline != before.timeline {
		t.Errorf("with %s stopped: leader %s TL%d, want %s TL%d", etcdLeader, st.leader, st.timeline, before.leader, before.timeline)
	}
	if msg := ackedAfter(sc.writers, now.Add(-3*time.Second), 1); msg != "" {
		t.Errorf("with %s stopped, writes did not continue: %s", etcdLeader, msg)
	}
	sc.note("docker stop %s (etcd leader): leader %s kept over %s; %s", etcdLeader, st.leader, hold, gaps(at, now, sc.hw, sc.pw))
	for _, w := range sc.writers {
		for _, e := range w.errorsBetween(at, now) {
			t.Errorf("writer %s with %s stopped: %s", w.name, etcdLeader, e.msg)
		}
	}
	return st
}
