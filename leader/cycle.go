package leader

import (
	"context"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// cycle runs one round of the HA loop: gather the facts, decide, act,
// publish. It returns how long to sleep before the next round.
func (l *Loop) cycle(ctx context.Context, shuttingDown bool) time.Duration {
	if l.opt.OnCycle != nil {
		defer func(start time.Time) { l.opt.OnCycle(time.Since(start)) }(time.Now())
	}
	g := l.gather(ctx, shuttingDown)
	if l.isKilled() {
		// Killed mid-cycle (kill -9 in tests, SIGUSR2 detach): act on
		// nothing, publish nothing; what a dead daemon leaves is what the
		// next one adopts.
		return 0
	}
	a := l.decide(g.facts)
	l.mem = l.act(ctx, a, g)
	if l.isKilled() {
		return 0
	}
	return l.publishCycle(ctx, a, g)
}

// gathered is one round's facts plus what the publish step needs.
type gathered struct {
	facts Facts
	cfg   config.DynamicConfig
	lease LeaseState
}

// gather reads etcd (the view), the local Postgres and, when the leader
// key is free, the peers' positions, and hands the view to subscribers
// at once (the pooler re-routes before anything else happens).
func (l *Loop) gather(ctx context.Context, shuttingDown bool) gathered {
	l.mu.Lock()
	prev := l.view
	l.mu.Unlock()
	cfg := prev.Config
	if cfg.TTL == 0 {
		cfg = l.opt.Bootstrap
	}
	ls := l.lease.State()
	deadline := writeDeadline(ls)
	// Never let an etcd read run past the fencing deadline of a primary.
	readTimeout := cfg.RetryTimeout.D()
	if l.role == cluster.RolePrimary && !deadline.IsZero() {
		readTimeout = min(readTimeout, max(time.Until(deadline), 50*time.Millisecond))
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	snap, err := l.store.Read(rctx)
	cancel()
	viewOK := err == nil
	v := prev
	if viewOK {
		v = snap.View
		cfg = v.Config
		if l.opt.OnView != nil {
			l.opt.OnView(v)
		}
		l.publishView(v)
		ls = l.applyTTL(ctx, v, ls)
	} else {
		l.log.Warn("cannot read the cluster from etcd", "err", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	local, err := l.pg.Status(sctx)
	scancel()
	if err != nil {
		l.log.Warn("cannot read the local postgres status", "err", err)
	}
	mem := l.mem
	mem, local = mem.observe(local)
	if local.Running && !local.InRecovery && viewOK && v.Leader == l.opt.Name {
		mem = mem.healed()
	}
	now := l.now()
	mem.CandidateWait = mem.CandidateWait.next(v, viewOK, l.opt.Name, now)
	f := Facts{
		Me:                 l.opt.Name,
		Tags:               l.tags(),
		View:               v,
		ViewOK:             viewOK,
		LeaderLeaseMine:    snap.LeaderLease == ls.ID,
		Now:                now,
		LeaseDeadline:      deadline,
		Local:              local,
		Memory:             mem,
		Peers:              l.peers(ctx, v, viewOK, local),
		ShuttingDown:       shuttingDown,
		CandidateWaitSince: mem.CandidateWait.since,
	}
	if viewOK && v.Leader == l.opt.Name && v.Failover != nil && local.Running && !local.InRecovery {
		// A switchover hands over only to a replica streaming from here.
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		if ds, err := l.pg.Streaming(dctx); err == nil {
			f.Downstream = ds
		} else {
			l.log.Warn("switchover: which replicas stream from here", "err", err)
		}
		dcancel()
	}
	return gathered{facts: f, cfg: cfg, lease: ls}
}

// applyTTL takes a changed ttl: it applies at the next grant. A
// non-leader regrants now (its member key is republished this cycle); the
// leader keeps its lease, bound to the leader key, until it steps down.
func (l *Loop) applyTTL(ctx context.Context, v cluster.View, ls LeaseState) LeaseState {
	ttl := v.Config.TTL.D()
	if ttl <= 0 || ttl == ls.TTL || ls.ID == 0 {
		return ls
	}
	l.lease.SetTTL(ttl)
	if v.Leader == l.opt.Name {
		return ls
	}
	l.log.Info("ttl changed; renewing the member lease", "ttl", ttl.String())
	rctx, cancel := context.WithTimeout(ctx, v.Config.RetryTimeout.D())
	defer cancel()
	if err := l.lease.Regrant(rctx); err != nil {
		l.log.Warn("regrant lease", "err", err)
	}
	return l.lease.State()
}

// decide calls Decide and logs its answer: actions at INFO; waiting at
// INFO when its reason changes (numbers aside), so an operator sees why a
// node is idle without a line a second.
func (l *Loop) decide(f Facts) Action {
	a := Decide(f)
	key := string(a.Kind) + strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, a.Why)
	if (a.Kind != Nothing && a.Kind != Keep) || key != l.lastDecision {
		l.log.Info("ha decision", "action", string(a.Kind), "target", a.Target, "why", a.Why)
	} else {
		l.log.Debug("ha decision", "action", string(a.Kind), "why", a.Why)
	}
	l.lastDecision = key
	return a
}

// act announces this member before a long action (so the leader can make
// its replication slot meanwhile), carries the action out, and returns
// the memory it leaves: the action's outcome, with a failure recorded
// for the backoff.
func (l *Loop) act(ctx context.Context, a Action, g gathered) Memory {
	f := g.facts
	if f.ViewOK && a.Kind != Nothing && a.Kind != Keep && a.Kind != Fence {
		// A lost lease is being regranted right now: wait for it briefly.
		for i := 0; i < 20 && l.lease.State().ID == 0 && ctx.Err() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		pctx, pcancel := context.WithTimeout(ctx, min(g.cfg.RetryTimeout.D(), time.Second))
		l.publishMember(pctx, f.Local)
		pcancel()
	}
	mem, err := l.execute(ctx, a, f)
	if log, repeats := mem.Backoff.record(a, err, l.now(), g.cfg.LoopWait.D()); log {
		l.log.Error("ha action failed", "action", string(a.Kind), "target", a.Target, "err", err,
			"repeats_not_logged", repeats, "retry_in", mem.Backoff.until.Sub(l.now()).Round(time.Millisecond).String())
	}
	if f.ViewOK && a.Kind == Nothing && f.Local.Running && f.Local.InRecovery {
		// A replica keeps the slots of the members that cascade from it.
		l.syncSlots(ctx, f.View, false, false)
	}
	return mem
}

// publishCycle publishes the round's outcome: the role line, the member
// key, on the leader the status key, the fence's permission lease and
// the subscribers' view. It returns how long to sleep.
func (l *Loop) publishCycle(ctx context.Context, a Action, g gathered) time.Duration {
	f, cfg := g.facts, g.cfg
	local, v := f.Local, f.View
	if a.Kind != Nothing && a.Kind != Keep {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		if st, err := l.pg.Status(sctx); err == nil {
			local = st
		}
		scancel()
	}
	holds := f.ViewOK && v.Leader == l.opt.Name && f.LeaderLeaseMine
	if f.ViewOK {
		// Re-read so the role line, status write and subscribers see the
		// outcome of the action.
		rctx, cancel := context.WithTimeout(ctx, cfg.RetryTimeout.D())
		if s, err := l.store.Read(rctx); err == nil {
			v = s.View
			holds = v.Leader == l.opt.Name && s.LeaderLease == l.lease.State().ID
		}
		cancel()
	}
	l.noteRole(local, holds, a.Why)
	l.primaryRunning.Store(MaybeWritable(local))
	if f.ViewOK {
		// A failed read proves nothing: the key stays bound to the lease
		// while keepalives are acknowledged, and the permission lapses on
		// its own when they are not.
		if holds {
			l.writeLease.Store(int64(l.lease.State().ID))
		} else {
			l.writeLease.Store(0)
		}
	}
	if !f.ShuttingDown && f.ViewOK {
		// A primary never lets an etcd write run past its fencing deadline.
		wt := cfg.RetryTimeout.D()
		if local.Running && !local.InRecovery {
			wt = min(wt, max(time.Until(writeDeadline(l.lease.State())), 50*time.Millisecond))
		}
		pctx, pcancel := context.WithTimeout(ctx, wt)
		l.publishMember(pctx, local)
		if holds && local.Running && !local.InRecovery {
			if err := l.store.WriteStatus(pctx, l.lease.State().ID, cluster.Status{Optime: local.Position}); err != nil {
				l.log.Debug("write status", "err", err)
			}
		}
		pcancel()
	}
	l.publish(v, f.ViewOK, local, holds)
	wait := cfg.LoopWait.D()
	if local.Running && !local.InRecovery {
		if d := time.Until(writeDeadline(l.lease.State())); d < wait {
			wait = max(d, 10*time.Millisecond)
		}
	}
	return wait
}
