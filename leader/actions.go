package leader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
)

// execute carries out one action.
func (l *Loop) execute(ctx context.Context, a Action, f Facts) error {
	lease := l.lease.State().ID
	etcdTimeout := f.View.Config.RetryTimeout.D()
	if etcdTimeout <= 0 {
		etcdTimeout = 3 * time.Second
	}
	ectx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, etcdTimeout) }
	upstream := func() (Upstream, error) {
		m, ok := f.View.Member(a.Target)
		if !ok {
			return Upstream{}, fmt.Errorf("leader: member %s has no member key", a.Target)
		}
		if f.Tags.NoStream && a.Kind != Clone && a.Kind != Reclone && a.Kind != Rewind {
			// nostream: a standby without primary_conninfo, replaying
			// from the archive (restore_command) only.
			return Upstream{Name: m.Name}, nil
		}
		up, err := UpstreamFromConnURL(m.Name, m.ConnURL)
		if err == nil && f.View.Config.PostgreSQL.UseSlots {
			up.Slot = l.opt.Name
		}
		return up, err
	}
	switch a.Kind {
	case Nothing:
		return nil

	case Keep:
		if f.ViewOK {
			l.syncSlots(ctx, f.View, true, false)
			l.syncReplication(ctx, f, lease)
		}
		return nil

	case Fence:
		l.fence()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		l.log.Warn("fencing: stopping postgres immediately", "why", a.Why)
		return l.pg.Stop(sctx, true)

	case Bootstrap:
		return l.bootstrap(ctx, f, lease)

	case Clone, Reclone:
		up, err := upstream()
		if err != nil {
			return err
		}
		if a.Kind == Reclone {
			if err := l.pg.Stop(ctx, false); err != nil {
				return err
			}
			if err := l.pg.Wipe(ctx); err != nil {
				return err
			}
		}
		l.state = cluster.StateCreatingReplica
		if err := l.pg.Clone(ctx, up); err != nil {
			return err
		}
		l.rewindFailed, l.cleanStop = false, false
		l.following = up.Name
		if f.Tags.NoStream || up.Name != upstreamOf(f.View, l.opt.Name, f.Tags) {
			l.following = "" // the next cycle points it where it belongs
		}
		return l.pg.Start(ctx)

	case StartReplica:
		if a.Target == "" {
			if f.Local.Standby {
				return l.pg.Start(ctx)
			}
			return l.pg.Demote(ctx, nil)
		}
		up, err := upstream()
		if err != nil {
			return err
		}
		l.following = up.Name
		l.cleanStop = false
		if f.Local.Standby {
			if err := l.pg.Follow(ctx, up); err != nil {
				return err
			}
			return l.pg.Start(ctx)
		}
		return l.pg.Demote(ctx, &up)

	case Follow:
		up, err := upstream()
		if err != nil {
			return err
		}
		if err := l.pg.Follow(ctx, up); err != nil {
			return err
		}
		l.following = up.Name
		return nil

	case Rewind:
		up, err := upstream()
		if err != nil {
			return err
		}
		if err := l.pg.Rewind(ctx, up); err != nil {
			l.rewindFailed = true
			return fmt.Errorf("leader: rewind against %s (will re-clone): %w", up.Name, err)
		}
		l.following = up.Name
		if f.Tags.NoStream || up.Name != upstreamOf(f.View, l.opt.Name, f.Tags) {
			l.following = ""
		}
		return l.pg.Start(ctx)

	case Demote:
		l.fence()
		if a.Target == "" {
			return l.pg.Demote(ctx, nil)
		}
		// Stop now; the next cycle rewinds (a no-op when the timelines did
		// not diverge) and starts as a replica of the leader.
		l.cleanStop = false
		return l.pg.Stop(ctx, false)

	case Acquire:
		// The fence must allow writes before the key is ours: a node the
		// fence refuses (watchdog.mode required) never leads.
		if err := l.permit(lease, "take the leader key"); err != nil {
			return err
		}
		c, cancel := ectx()
		ok, err := l.store.AcquireLeader(c, lease)
		cancel()
		if err != nil || !ok {
			return err
		}
		l.log.Info("took the leader key", "why", a.Why)
		kind := "failover: "
		switch fo := f.View.Failover; {
		case fo != nil && fo.Leader != "":
			kind = "switchover: " // requested, whether or not it named a candidate
		case fo != nil:
			kind = "manual failover: "
		}
		if err := l.promote(ctx, f, lease, kind+a.Why); err != nil {
			return err
		}
		if f.View.Failover == nil && l.opt.OnFailover != nil {
			l.opt.OnFailover()
		}
		return nil

	case AdoptLeader:
		c, cancel := ectx()
		defer cancel()
		if err := l.store.AdoptLeader(c, lease, f.View.LeaderRevision); err != nil {
			return err
		}
		// The running primary now lives on this run's lease: extend the
		// permission the previous run gave the fence keeper.
		return l.permit(lease, "adopt the leader key")

	case Promote:
		return l.promote(ctx, f, lease, a.Why)

	case Restart:
		if err := l.permit(lease, "restart the primary"); err != nil {
			return err
		}
		l.crashTried = true
		l.state = cluster.StateStarting
		timeout := f.View.Config.MasterStartTimeout.D()
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return l.restartInPlace(sctx, timeout)

	case Release:
		l.fence()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := l.pg.Stop(sctx, true)
		cancel()
		if err != nil {
			// Releasing now could let another node promote while this
			// server still takes writes: keep the key; the next cycle
			// tries again, and the lease fences if it runs out.
			return fmt.Errorf("leader: postgres did not stop; keeping the leader key: %w", err)
		}
		c, cancel := ectx()
		defer cancel()
		return l.store.ReleaseLeader(c)

	case Switchover, Handover:
		// A checkpoint while writes still flow makes the shutdown
		// checkpoint (inside the write gap) short.
		cctx, ccancel := context.WithTimeout(ctx, checkpointBound)
		if err := l.pg.Checkpoint(cctx); err != nil {
			l.log.Warn("checkpoint before the planned stop", "err", err)
		}
		ccancel()
		// Poolers stop routing here first (the local one through the
		// fence hook, the others through the published state).
		l.fence()
		c, cancel := ectx()
		l.drain(ctx, c, f.Local)
		cancel()
		if err := l.pg.Stop(ctx, false); err != nil {
			return err
		}
		l.cleanStop = true
		c, cancel = ectx()
		defer cancel()
		// Record where the WAL ended (the shutdown checkpoint every
		// streaming replica received): the candidate takes over only
		// once it has all of it.
		if end, err := l.pg.StoppedAt(c); err == nil && end > 0 {
			if err := l.store.WriteStatus(c, lease, cluster.Status{Optime: end}); err != nil {
				l.log.Warn("planned stop: record the last WAL position", "err", err)
			}
		} else if err != nil {
			l.log.Warn("planned stop: read the last WAL position", "err", err)
		}
		return l.store.ReleaseLeader(c)

	case ClearFailover:
		c, cancel := ectx()
		defer cancel()
		return l.store.FinishFailover(c, f.View.Failover.Revision)

	case Shutdown:
		return l.pg.Stop(ctx, false)
	}
	return fmt.Errorf("leader: unknown action %q", a.Kind)
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
		select {
		case <-ctx.Done():
			return fmt.Errorf("leader: restart crashed primary: not accepting connections within %s: %w", timeout, errors.Join(lastErr, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// syncSlots keeps, when use_slots is on, one physical replication slot
// per member that streams from this node (on the leader: the replicas
// that do not cascade and are not tagged nostream; on a replica: the
// members whose replicatefrom names it), and on the leader the dynamic
// config's permanent slots; slots pgha created that are no longer wanted
// are dropped, ignore_slots never touched. It runs at once after a
// promotion (so replicas find their slot when they reconnect), else when
// the wanted set changed or every 30 s. Failures are logged: slots
// protect WAL, they do not gate writes.
func (l *Loop) syncSlots(ctx context.Context, v cluster.View, leading, now bool) {
	if !v.Config.PostgreSQL.UseSlots {
		return
	}
	want := Slots{Members: streamsFrom(v, l.opt.Name), Ignore: v.Config.IgnoreSlots}
	if leading {
		want.Permanent = v.Config.Slots
	}
	key := fmt.Sprintf("%v|%v|%v", want.Members, want.Permanent, want.Ignore)
	if !now && key == l.slotSet && time.Since(l.slotSynced) < 30*time.Second {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.pg.SyncSlots(sctx, want); err != nil {
		// Retried every cycle; the same error is logged once a minute.
		if msg := err.Error(); msg != l.slotErr || time.Since(l.slotErrAt) > time.Minute {
			l.log.Warn("replication slots", "err", err)
			l.slotErr, l.slotErrAt = msg, time.Now()
		}
		return
	}
	l.slotSet, l.slotSynced, l.slotErr = key, time.Now(), ""
}

// syncReplication manages synchronous replication on the leader when
// synchronous_mode is on, as Patroni does (one synchronous standby, not
// strict): it picks the best streaming replica (the current one while it
// streams), sets synchronous_standby_names, and names the standby in the
// sync key only once Postgres reports it synchronous. Whenever the
// standby is to change or has stopped being synchronous, the sync key is
// first narrowed to no standby (then no replica may take over), so the
// key never names a member that may lack acknowledged commits. With no
// standby left, commits stop waiting, or with synchronous_mode_strict
// wait for any standby ('*'). With the mode off it clears both.
func (l *Loop) syncReplication(ctx context.Context, f Facts, lease clientv3.LeaseID) {
	v := f.View
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !v.Config.SynchronousMode {
		if l.syncOn {
			if err := l.pg.SetSyncStandby(sctx, nil); err != nil {
				l.log.Warn("synchronous replication: clear synchronous_standby_names", "err", err)
				return
			}
			l.syncOn = false
		}
		if v.Sync != nil {
			if err := l.store.DeleteSync(sctx, lease); err != nil {
				l.log.Warn("synchronous replication: delete the sync key", "err", err)
			}
		}
		return
	}
	l.syncOn = true
	var current []string
	keyOK := v.Sync != nil && v.Sync.Leader == l.opt.Name
	if keyOK {
		current = v.Sync.Standbys()
	}
	streaming, err := l.pg.Streaming(sctx)
	if err != nil {
		l.log.Warn("synchronous replication", "err", err)
		return
	}
	var actual []string // confirmed synchronous now
	for name, state := range streaming {
		if state == "sync" || state == "quorum" {
			actual = append(actual, name)
		}
	}
	n := max(v.Config.SynchronousNodeCount, 1)
	want := pickSyncStandbys(v, l.opt.Name, current, streaming, n)
	write := func(standbys []string) bool {
		slices.Sort(standbys)
		if err := l.store.WriteSync(sctx, lease, cluster.Sync{Leader: l.opt.Name, SyncStandby: strings.Join(standbys, ",")}); err != nil {
			l.log.Warn("synchronous replication: write the sync key", "err", err)
			return false
		}
		keyOK, current = true, standbys
		return true
	}
	// Narrow first: the key keeps only standbys still wanted and still
	// synchronous, so it never names one that may lack a commit.
	keep := slices.DeleteFunc(slices.Clone(current), func(s string) bool {
		return !slices.Contains(want, s) || !slices.Contains(actual, s)
	})
	if len(keep) != len(current) {
		was := slices.Clone(current)
		if !write(keep) {
			return
		}
		l.log.Info("synchronous replication: sync key narrowed to the confirmed standbys", "was", strings.Join(was, ","), "now", strings.Join(keep, ","), "next", strings.Join(want, ","))
	}
	if !keyOK && !write(nil) {
		return
	}
	names := want
	if len(names) == 0 && v.Config.SynchronousModeStrict {
		names = []string{"*"} // no standby left: writes wait rather than go async
	}
	if err := l.pg.SetSyncStandby(sctx, names); err != nil {
		l.log.Warn("synchronous replication: set synchronous_standby_names", "err", err)
		return
	}
	// Widen only to standbys Postgres reports synchronous now.
	confirmed := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return !slices.Contains(actual, s) })
	slices.Sort(confirmed)
	sortedCur := slices.Sorted(slices.Values(current))
	if len(confirmed) > len(sortedCur) && write(confirmed) {
		l.log.Info("synchronous replication: synchronous standbys confirmed", "standbys", strings.Join(confirmed, ","))
	}
}

// pickSyncStandbys chooses up to n synchronous standbys among the
// replicas that may be promoted, are not tagged nosync, and stream from
// this primary (per their member key and pg_stat_replication): the
// current ones while they qualify, then the ones furthest ahead (ties by
// name); nil when there is none.
func pickSyncStandbys(v cluster.View, me string, current []string, streaming map[string]string, n int) []string {
	type cand struct {
		name string
		pos  int64
		cur  bool
	}
	var cs []cand
	for _, m := range v.Members {
		if _, ok := streaming[m.Name]; !ok || m.Name == me || m.Role != cluster.RoleReplica || m.State != cluster.StateStreaming || !canPromote(m.Tags) || m.Tags.NoSync {
			continue
		}
		cs = append(cs, cand{m.Name, max(m.XLogLocation, m.ReplayLSN, m.ReceiveLSN), slices.Contains(current, m.Name)})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.cur != b.cur:
			if a.cur {
				return -1
			}
			return 1
		case a.pos != b.pos:
			if a.pos > b.pos {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var out []string
	for _, c := range cs[:min(n, len(cs))] {
		out = append(out, c.name)
	}
	return out
}

func (l *Loop) fence() {
	if l.opt.OnFence != nil {
		l.opt.OnFence()
	}
}

// promote promotes the local replica (if it is one) after taking the key,
// records the timeline switch in history, and clears a failover request.
// A failed promotion releases the key so another member can try.
func (l *Loop) promote(ctx context.Context, f Facts, lease clientv3.LeaseID, why string) error {
	if f.Local.InRecovery || !f.Local.Running {
		// Re-check the lease right before the server becomes writable:
		// taking the key may have taken long enough to eat the margin.
		if err := l.permit(lease, "promote"); err != nil {
			return l.releaseAfter(ctx, err)
		}
		if !f.Local.Running {
			if err := l.pg.Start(ctx); err != nil {
				return l.releaseAfter(ctx, fmt.Errorf("leader: start before promote: %w", err))
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
			return l.releaseAfter(ctx, err)
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
		entry := cluster.HistoryEntry{Timeline: f.Local.Timeline, LSN: f.Local.Position, Reason: why, Timestamp: time.Now(), NewLeader: l.opt.Name}
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
	l.crashTried, l.cleanStop, l.rewindFailed, l.following = false, false, false, ""
	// The view was read before this member took the key: slots go to the
	// members that stream from the new leader, this one.
	lv := f.View
	lv.Leader = l.opt.Name
	l.syncSlots(ctx, lv, true, true)
	if f.View.Failover != nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := l.store.ClearFailover(cctx); err != nil {
			l.log.Warn("clear failover key", "err", err)
		}
	}
	return nil
}

func (l *Loop) releaseAfter(ctx context.Context, cause error) error {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := l.store.ReleaseLeader(c); err != nil {
		return errors.Join(cause, err)
	}
	return fmt.Errorf("%w (leader key released)", cause)
}

// bootstrap races for the initialize key; the winner initialises (or
// adopts an existing data dir), takes the leader key and stores the system
// identifier.
func (l *Loop) bootstrap(ctx context.Context, f Facts, lease clientv3.LeaseID) error {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	won, err := l.store.ClaimInitialize(c, lease)
	cancel()
	if err != nil || !won {
		return err
	}
	if err := l.permit(lease, "bootstrap"); err != nil {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		return errors.Join(err, l.store.CancelInitialize(c))
	}
	l.log.Info("won the initialize race: bootstrapping the cluster")
	l.state = cluster.StateInitializing
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	l.publishMember(pctx, f.Local)
	pcancel()
	ranInitdb := false
	fail := func(err error) error {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if ranInitdb {
			// A half-bootstrapped data dir of a system that never became the
			// cluster's would later read as a foreign cluster: remove it.
			if serr := l.pg.Stop(c, true); serr != nil {
				err = errors.Join(err, serr)
			} else if werr := l.pg.Wipe(c); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		if cerr := l.store.CancelInitialize(c); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return fmt.Errorf("leader: bootstrap: %w", err)
	}
	if !f.Local.Initialized {
		ranInitdb = true
		if err := l.pg.Bootstrap(ctx); err != nil {
			return fail(err)
		}
	} else if err := l.pg.Start(ctx); err != nil {
		return fail(err)
	}
	c, cancel = context.WithTimeout(ctx, 3*time.Second)
	ok, err := l.store.AcquireLeader(c, lease)
	cancel()
	if err != nil || !ok {
		_ = l.pg.Stop(ctx, true)
		return fail(fmt.Errorf("take the leader key after initdb: ok=%v err=%v", ok, err))
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := l.pg.Status(sctx)
	scancel()
	if err != nil {
		return fail(err)
	}
	if st.InRecovery {
		if err := l.pg.Promote(ctx); err != nil {
			return fail(err)
		}
	}
	c, cancel = context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := l.store.CompleteInitialize(c, st.SystemID); err != nil {
		return err
	}
	l.log.Info("cluster bootstrapped", "system_identifier", st.SystemID)
	return nil
}

// drainTimeout bounds how long a planned stop of the primary waits for
// running transactions; drainNotice is the least it waits, so that every
// pooler has seen the announcement before the server stops.
const (
	drainTimeout = 2 * time.Second
	drainNotice  = 100 * time.Millisecond
	// checkpointBound bounds the checkpoint before a planned stop.
	checkpointBound = 30 * time.Second
)

// drain prepares a planned stop of the primary (switchover, handover): it
// publishes the member as stopping, which takes it out of every pooler's
// routing (new transactions wait for the next primary instead of meeting a
// shutting-down server), then lets running transactions end, bounded by
// drainTimeout. ectx bounds the etcd write.
func (l *Loop) drain(ctx, ectx context.Context, local Local) {
	l.state = cluster.StateStopping
	l.publishMember(ectx, local)
	start := time.Now()
	busy := 0
	for {
		waited := time.Since(start)
		if waited >= drainNotice {
			n, err := l.pg.Busy(ctx)
			if err != nil || n == 0 {
				return
			}
			busy = n
		}
		if waited >= drainTimeout {
			l.log.Info("planned stop: transactions still running after the drain bound; stopping anyway", "busy", busy, "bound", drainTimeout)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
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
