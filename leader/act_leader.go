package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
)

// The actions of the member that holds, takes or gives up the leader key.

// keep: the leader is healthy; keep its slots and synchronous standbys
// right (the lease renews itself).
func (l *Loop) keep(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	if s.f.ViewOK {
		l.syncSlots(ctx, s.f.View, true, false)
		m.SyncManaged = l.syncReplication(ctx, s.f, s.lease, m.SyncManaged)
	}
	return m, nil
}

// fenceNow stops taking writes at once: the pooler first, then Postgres
// (immediate shutdown).
func (l *Loop) fenceNow(ctx context.Context, s step) (Memory, error) {
	l.fence()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l.log.Warn("fencing: stopping postgres immediately", "why", s.a.Why)
	return s.mem, l.pg.Stop(sctx, true)
}

// acquire takes the free leader key and promotes. The fence must allow
// writes before the key is ours: a node the fence refuses (watchdog.mode
// required) never leads.
func (l *Loop) acquire(ctx context.Context, s step) (Memory, error) {
	if err := l.permit(s.lease, "take the leader key"); err != nil {
		return s.mem, err
	}
	c, cancel := s.etcd(ctx)
	ok, err := l.store.AcquireLeader(c, s.lease)
	cancel()
	if err != nil || !ok {
		return s.mem, err
	}
	l.log.Info("took the leader key", "why", s.a.Why)
	kind := "failover: "
	switch fo := s.f.View.Failover; {
	case fo != nil && fo.Leader != "":
		kind = "switchover: " // requested, whether or not it named a candidate
	case fo != nil:
		kind = "manual failover: "
	}
	m, err := l.promote(ctx, s.f, s.lease, kind+s.a.Why)
	if err != nil {
		return m, err
	}
	if s.f.View.Failover == nil && l.opt.OnFailover != nil {
		l.opt.OnFailover()
	}
	return m, nil
}

// adoptLeader rebinds a leader key left by a previous run of this daemon
// to the current lease; the running primary then lives on this run's
// lease, so the permission the previous run gave the fence keeper is
// extended.
func (l *Loop) adoptLeader(ctx context.Context, s step) (Memory, error) {
	c, cancel := s.etcd(ctx)
	defer cancel()
	if err := l.store.AdoptLeader(c, s.lease, s.f.View.LeaderRevision); err != nil {
		return s.mem, err
	}
	return s.mem, l.permit(s.lease, "adopt the leader key")
}

// promoteHeld promotes the replica of a member that holds the key.
func (l *Loop) promoteHeld(ctx context.Context, s step) (Memory, error) {
	return l.promote(ctx, s.f, s.lease, s.a.Why)
}

// restart starts the leader's crashed Postgres once, bounded by
// master_start_timeout.
func (l *Loop) restart(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	if err := l.permit(s.lease, "restart the primary"); err != nil {
		return m, err
	}
	m.CrashRestartTried = true
	l.state = cluster.StateStarting
	timeout := s.f.View.Config.MasterStartTimeout.D()
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return m, l.restartInPlace(sctx, timeout)
}

// release gives the key up at once when the leader's Postgres did not
// come back. Releasing while the server might still take writes could
// make two primaries: a server that does not stop keeps the key (the
// next cycle tries again, and the lease fences when it runs out).
func (l *Loop) release(ctx context.Context, s step) (Memory, error) {
	l.fence()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := l.pg.Stop(sctx, true)
	cancel()
	if err != nil {
		return s.mem, fmt.Errorf("leader: postgres did not stop; keeping the leader key: %w", err)
	}
	c, cancel := s.etcd(ctx)
	defer cancel()
	return s.mem, l.store.ReleaseLeader(c)
}

// clearFailover deletes a failover request that cannot be carried out.
func (l *Loop) clearFailover(ctx context.Context, s step) (Memory, error) {
	c, cancel := s.etcd(ctx)
	defer cancel()
	return s.mem, l.store.DeleteFailover(c, s.f.View.Failover.Revision)
}

// restartInPlace starts the crashed primary, retrying while the dead
// postmaster's children are still exiting, until it accepts connections
// or ctx (master_start_timeout) ends.
func (l *Loop) restartInPlace(ctx context.Context, timeout time.Duration) error {
	var lastErr error
	for {
		if err := l.pg.Start(ctx); err != nil {
			lastErr = err
		} else if st, err := l.pg.Status(ctx); err == nil && st.Running {
			l.log.Info("crashed primary restarted in place")
			return nil
		} else if err != nil {
			lastErr = err
		}
		if !l.sleep(ctx, 200*time.Millisecond) {
			return fmt.Errorf("leader: restart crashed primary: not accepting connections within %s: %w", timeout, errors.Join(lastErr, ctx.Err()))
		}
	}
}

func (l *Loop) fence() {
	if l.opt.OnFence != nil {
		l.opt.OnFence()
	}
}

// promote promotes the local replica (if it is one) after taking the key,
// records the timeline switch in history, and clears a failover request.
// A failed promotion releases the key so another member can try.
func (l *Loop) promote(ctx context.Context, f Facts, lease clientv3.LeaseID, why string) (Memory, error) {
	m := f.Memory
	if f.Local.InRecovery || !f.Local.Running {
		// Re-check the lease right before the server becomes writable:
		// taking the key may have taken long enough to eat the margin.
		if err := l.permit(lease, "promote"); err != nil {
			return m, l.releaseAfter(ctx, err)
		}
		if !f.Local.Running {
			if err := l.pg.Start(ctx); err != nil {
				return m, l.releaseAfter(ctx, fmt.Errorf("leader: start before promote: %w", err))
			}
		}
		if c := f.View.Config; c.SynchronousMode && c.SynchronousModeStrict {
			// Strict: commits on the new primary wait for a standby from
			// the start, not only once the next cycle picks one.
			if err := l.pg.SetSyncStandby(ctx, []string{"*"}); err != nil {
				l.log.Warn("synchronous replication: strict mode before promote", "err", err)
			}
		}
		if err := l.pg.Promote(ctx); err != nil {
			return m, l.releaseAfter(ctx, err)
		}
		// Announce the new primary the moment it takes writes: every
		// pooler routes to it from this member key, not from the end of
		// the cycle. Then ready it for pg_rewind of the old primary.
		l.announcePrimary(ctx, why)
		if err := l.pg.FinishPromote(ctx); err != nil {
			l.log.Warn("after promote", "err", err)
		}
		// The exact fork point (replicas past it must rewind) is in the new
		// timeline's history file; the position before the promotion is
		// the fallback.
		entry := cluster.HistoryEntry{Timeline: f.Local.Timeline, LSN: f.Local.Position, Reason: why, Timestamp: l.now(), NewLeader: l.opt.Name}
		if tl, lsn, err := l.pg.SwitchPoint(ctx); err == nil {
			entry.Timeline, entry.LSN = tl, lsn
		} else {
			l.log.Warn("timeline switch point", "err", err)
		}
		hist := append([]cluster.HistoryEntry(nil), f.View.History...)
		hist = append(hist, entry)
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := l.store.WriteHistory(hctx, lease, hist); err != nil {
			l.log.Warn("write history", "err", err)
		}
		cancel()
	}
	m.CrashRestartTried, m.CleanStop, m.RewindFailed, m.Following = false, false, false, ""
	// The view was read before this member took the key: slots go to the
	// members that stream from the new leader, this one.
	lv := f.View
	lv.Leader = l.opt.Name
	l.syncSlots(ctx, lv, true, true)
	if f.View.Failover != nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := l.store.DeleteFailover(cctx, 0); err != nil {
			l.log.Warn("clear failover key", "err", err)
		}
	}
	return m, nil
}

func (l *Loop) releaseAfter(ctx context.Context, cause error) error {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := l.store.ReleaseLeader(c); err != nil {
		return errors.Join(cause, err)
	}
	return fmt.Errorf("%w (leader key released)", cause)
}

// announcePrimary publishes this member as the running primary right
// after its promotion, and hands the fresh view to this node's own
// subscribers (pooler, REST API), so that writes resume without waiting
// for the rest of the cycle (checkpoint, history, slots).
func (l *Loop) announcePrimary(ctx context.Context, why string) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	local, err := l.pg.Status(sctx)
	if err != nil {
		l.log.Warn("status after promote", "err", err)
		return
	}
	l.noteRole(local, true, why)
	l.publishMember(sctx, local)
	if s, err := l.store.Read(sctx); err == nil {
		l.publishView(s.View)
	}
}
