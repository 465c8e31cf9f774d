package leader

import (
	"context"
	"fmt"

	"github.com/pgha/pgha/cluster"
)

// The actions of a member that is, or becomes, a replica.

// clone copies the target's data into the empty data dir (Reclone wipes
// it first) and starts the new replica.
func (l *Loop) clone(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	up, err := l.upstream(s)
	if err != nil {
		return m, err
	}
	if s.a.Kind == Reclone {
		if err := l.pg.CheckSource(ctx, up); err != nil {
			return m, fmt.Errorf("leader: re-clone from %s: nothing stopped or removed: %w", up.Name, err)
		}
		if err := l.pg.Stop(ctx, false); err != nil {
			return m, err
		}
		if err := l.pg.Wipe(ctx); err != nil {
			return m, err
		}
	}
	l.state = cluster.StateCreatingReplica
	if err := l.pg.Clone(ctx, up); err != nil {
		return m, err
	}
	m.RewindFailed, m.CleanStop, m.ReplicaTimeline = false, false, 0
	m.Following = l.followingAfter(s, up)
	return m, l.pg.Start(ctx)
}

// startReplica starts a stopped replica following the target, or a
// standby with no upstream while the cluster has no leader.
func (l *Loop) startReplica(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	if s.a.Target == "" {
		if s.f.Local.Standby {
			return m, l.pg.Start(ctx)
		}
		return m, l.pg.Demote(ctx, nil)
	}
	up, err := l.upstream(s)
	if err != nil {
		return m, err
	}
	m.Following, m.CleanStop = up.Name, false
	if s.f.Local.Standby {
		if err := l.pg.Follow(ctx, up); err != nil {
			return m, err
		}
		return m, l.pg.Start(ctx)
	}
	return m, l.pg.Demote(ctx, &up)
}

// follow points a running replica at the target.
func (l *Loop) follow(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	up, err := l.upstream(s)
	if err != nil {
		return m, err
	}
	if err := l.pg.Follow(ctx, up); err != nil {
		return m, err
	}
	m.Following = up.Name
	return m, nil
}

// rewind runs pg_rewind against the target and starts as its replica; a
// failure is remembered so that the next decision re-clones.
func (l *Loop) rewind(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	up, err := l.upstream(s)
	if err != nil {
		return m, err
	}
	// An unreachable source is no rewind failure: nothing is stopped,
	// and the rewind is tried again rather than turned into a re-clone.
	if err := l.pg.CheckSource(ctx, up); err != nil {
		return m, fmt.Errorf("leader: rewind against %s: nothing stopped: %w", up.Name, err)
	}
	if err := l.pg.Rewind(ctx, up); err != nil {
		m.RewindFailed = true
		return m, fmt.Errorf("leader: rewind against %s (will re-clone): %w", up.Name, err)
	}
	m.ReplicaTimeline = 0
	m.Following = l.followingAfter(s, up)
	return m, l.pg.Start(ctx)
}

// demote stops taking writes on a primary that must not be one: a
// standby with no upstream at once, or (with a leader to follow) a stop,
// after which the next cycle rewinds and starts it as a replica.
func (l *Loop) demote(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	l.fence()
	if s.a.Target == "" {
		return m, l.pg.Demote(ctx, nil)
	}
	m.CleanStop = false
	return m, l.pg.Stop(ctx, false)
}
