package leader

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
)

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
	if !now && key == l.slots.set && time.Since(l.slots.synced) < 30*time.Second {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.pg.SyncSlots(sctx, want); err != nil {
		// Retried every cycle; the same error is logged once a minute.
		if msg := err.Error(); msg != l.slots.err || time.Since(l.slots.errAt) > time.Minute {
			l.log.Warn("replication slots", "err", err)
			l.slots.err, l.slots.errAt = msg, time.Now()
		}
		return
	}
	l.slots.set, l.slots.synced, l.slots.err = key, time.Now(), ""
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
//
// managed says whether this daemon may have set synchronous_standby_names
// (Memory.SyncManaged); the answer is its next value.
func (l *Loop) syncReplication(ctx context.Context, f Facts, lease clientv3.LeaseID, managed bool) bool {
	v := f.View
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !v.Config.SynchronousMode {
		if managed {
			if err := l.pg.SetSyncStandby(sctx, nil); err != nil {
				l.log.Warn("synchronous replication: clear synchronous_standby_names", "err", err)
				return true
			}
		}
		if v.Sync != nil {
			if err := l.store.DeleteSync(sctx, lease); err != nil {
				l.log.Warn("synchronous replication: delete the sync key", "err", err)
			}
		}
		return false
	}
	var current []string
	keyOK := v.Sync != nil && v.Sync.Leader == l.opt.Name
	if keyOK {
		current = v.Sync.Standbys()
	}
	streaming, err := l.pg.Streaming(sctx)
	if err != nil {
		l.log.Warn("synchronous replication", "err", err)
		return true
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
			return true
		}
		l.log.Info("synchronous replication: sync key narrowed to the confirmed standbys", "was", strings.Join(was, ","), "now", strings.Join(keep, ","), "next", strings.Join(want, ","))
	}
	if !keyOK && !write(nil) {
		return true
	}
	names := want
	if len(names) == 0 && v.Config.SynchronousModeStrict {
		names = []string{"*"} // no standby left: writes wait rather than go async
	}
	if err := l.pg.SetSyncStandby(sctx, names); err != nil {
		l.log.Warn("synchronous replication: set synchronous_standby_names", "err", err)
		return true
	}
	// Widen only to standbys Postgres reports synchronous now.
	confirmed := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return !slices.Contains(actual, s) })
	slices.Sort(confirmed)
	sortedCur := slices.Sorted(slices.Values(current))
	if len(confirmed) > len(sortedCur) && write(confirmed) {
		l.log.Info("synchronous replication: synchronous standbys confirmed", "standbys", strings.Join(confirmed, ","))
	}
	return true
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
		if _, ok := streaming[m.Name]; !ok || m.Name == me || m.Role != cluster.RoleReplica || m.State != cluster.StateStreaming || !cluster.CanPromote(m.Tags) || m.Tags.NoSync {
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
