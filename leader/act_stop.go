package leader

import (
	"context"
	"time"

	"github.com/pgha/pgha/cluster"
)

// plannedStop carries out a switchover or a shutdown handover of the
// leader: a checkpoint while writes still flow (so the shutdown
// checkpoint, inside the write gap, is short); the poolers stop routing
// here (the local one through the fence hook, the others through the
// published state); running transactions drain (bounded); a clean stop;
// the point where the WAL ended is recorded (the candidate takes over
// only once it has all of it); the key is released.
func (l *Loop) plannedStop(ctx context.Context, s step) (Memory, error) {
	m := s.mem
	cctx, ccancel := context.WithTimeout(ctx, checkpointBound)
	if err := l.pg.Checkpoint(cctx); err != nil {
		l.log.Warn("checkpoint before the planned stop", "err", err)
	}
	ccancel()
	l.fence()
	c, cancel := s.etcd(ctx)
	l.drain(ctx, c, s.f.Local)
	cancel()
	if err := l.pg.Stop(ctx, false); err != nil {
		return m, err
	}
	m.CleanStop = true
	c, cancel = s.etcd(ctx)
	defer cancel()
	if end, err := l.pg.StoppedAt(c); err == nil && end > 0 {
		if err := l.store.WriteStatus(c, s.lease, cluster.Status{Optime: end}); err != nil {
			l.log.Warn("planned stop: record the last WAL position", "err", err)
		}
	} else if err != nil {
		l.log.Warn("planned stop: read the last WAL position", "err", err)
	}
	return m, l.store.ReleaseLeader(c)
}

// shutdownPostgres stops a non-leader's Postgres when the daemon stops.
func (l *Loop) shutdownPostgres(ctx context.Context, s step) (Memory, error) {
	return s.mem, l.pg.Stop(ctx, false)
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
	start := l.now()
	busy := 0
	for {
		waited := l.now().Sub(start)
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
		if !l.sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}
