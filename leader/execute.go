package leader

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// step is one action being carried out: the action, the facts it was
// decided on, the lease it runs under, and the memory it updates.
type step struct {
	a     Action
	f     Facts
	lease clientv3.LeaseID
	mem   Memory
}

// etcd bounds one etcd request of the step by retry_timeout.
func (s step) etcd(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.f.View.Config.RetryTimeout.D()
	if d <= 0 {
		d = 3 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// actions maps each Kind to the function that carries it out. Each
// returns the memory the action leaves (its outcome) with its error.
var actions = map[Kind]func(l *Loop, ctx context.Context, s step) (Memory, error){
	Nothing:       func(_ *Loop, _ context.Context, s step) (Memory, error) { return s.mem, nil },
	Keep:          (*Loop).keep,
	Fence:         (*Loop).fenceNow,
	Bootstrap:     (*Loop).bootstrap,
	Clone:         (*Loop).clone,
	Reclone:       (*Loop).clone,
	StartReplica:  (*Loop).startReplica,
	Follow:        (*Loop).follow,
	Rewind:        (*Loop).rewind,
	Demote:        (*Loop).demote,
	Acquire:       (*Loop).acquire,
	AdoptLeader:   (*Loop).adoptLeader,
	Promote:       (*Loop).promoteHeld,
	Restart:       (*Loop).restart,
	Release:       (*Loop).release,
	Switchover:    (*Loop).plannedStop,
	Handover:      (*Loop).plannedStop,
	ClearFailover: (*Loop).clearFailover,
	Shutdown:      (*Loop).shutdownPostgres,
}

// execute carries out action a decided on f and returns the memory it
// leaves.
func (l *Loop) execute(ctx context.Context, a Action, f Facts) (Memory, error) {
	do, ok := actions[a.Kind]
	if !ok {
		return f.Memory, fmt.Errorf("leader: unknown action %q", a.Kind)
	}
	return do(l, ctx, step{a: a, f: f, lease: l.lease.State().ID, mem: f.Memory})
}

// upstream is the member s's action targets, as a replica's upstream:
// through the slot the leader keeps for this member (use_slots), or with
// no address at all for a member tagged nostream (it replays from the
// archive only).
func (l *Loop) upstream(s step) (Upstream, error) {
	m, ok := s.f.View.Member(s.a.Target)
	if !ok {
		return Upstream{}, fmt.Errorf("leader: member %s has no member key", s.a.Target)
	}
	if s.f.Tags.NoStream && s.a.Kind != Clone && s.a.Kind != Reclone && s.a.Kind != Rewind {
		return Upstream{Name: m.Name}, nil
	}
	up, err := UpstreamFromConnURL(m.Name, m.ConnURL)
	if err == nil && s.f.View.Config.PostgreSQL.UseSlots {
		up.Slot = l.opt.Name
	}
	return up, err
}

// followingAfter is what the memory records as followed once this member
// streams from up: nothing when up is not where it belongs (a clone from
// a clonefrom member, a rewind against the leader of a cascading or
// nostream replica), so that the next cycle points it there.
func (l *Loop) followingAfter(s step, up Upstream) string {
	if s.f.Tags.NoStream || up.Name != upstreamOf(s.f.View, l.opt.Name, s.f.Tags) {
		return ""
	}
	return up.Name
}
