package leader

import (
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// WriteFence is told how long this node may take writes: something that
// outlives the daemon (fence.Client and its keeper process) and stops
// Postgres when the permission runs out while the daemon is dead or
// frozen (DESIGN rule 1).
type WriteFence interface {
	// Allow permits writes until until; acked is the send time of the
	// lease keepalive behind it and ttl the lease's ttl. An error wrapping
	// ErrWritesRefused means the node must not take writes (watchdog.mode
	// required without a working device); other errors mean the fence is
	// unavailable for now (the daemon's own watchdog still guards).
	Allow(until, acked time.Time, ttl time.Duration) error
}

// ErrWritesRefused marks a write permission the fence refused.
var ErrWritesRefused = errors.New("leader: the fence refused the write permission")

// writeDeadline is until when a node whose leader key (or initialize
// claim) is bound to lease ls may take writes.
func writeDeadline(ls LeaseState) time.Time { return ls.Deadline(margin(ls.TTL)) }

// permit tells the fence this node may take writes until its lease's
// write deadline, and remembers that the lease now gates writes (the
// watchdog goroutine renews the permission while it does). It is called
// before anything makes the local Postgres writable: taking the initialize
// claim, taking or adopting the leader key, promoting, restarting the
// primary. Only a refusal is returned; an unavailable fence is logged.
func (l *Loop) permit(id clientv3.LeaseID, why string) error {
	ls := l.lease.State()
	if ls.ID == 0 || ls.ID != id {
		return fmt.Errorf("leader: %s: the lease changed (lost and regranted) before writes were permitted", why)
	}
	until := writeDeadline(ls)
	if now := l.now(); !now.Before(until) {
		return fmt.Errorf("leader: %s: the lease's write deadline passed (last acknowledged keepalive %s ago)", why, now.Sub(ls.AckedSentAt).Round(time.Millisecond))
	}
	l.writeLease.Store(int64(id))
	if l.opt.Fence == nil {
		return nil
	}
	defer func() {
		if l.writeLease.Load() != 0 {
			l.fenceRefused.Store(false)
		}
	}()
	if err := l.opt.Fence.Allow(until, ls.AckedSentAt, ls.TTL); err != nil {
		if errors.Is(err, ErrWritesRefused) {
			l.writeLease.Store(0)
			l.fenceRefused.Store(true)
			return fmt.Errorf("leader: %s: %w", why, err)
		}
		l.log.Warn("fence keeper unavailable; the daemon's own watchdog still guards the lease", "why", why, "err", err)
	}
	return nil
}

// permitSent is the last permission sent to the fence (watchdog goroutine).
type permitSent struct {
	acked, at time.Time
}

// renewPermit extends the fence's permission while the lease that gates
// writes is the current one and alive: at each acknowledged keepalive, and
// at least every second. It runs on the watchdog goroutine; after the
// deadline passes nothing is sent, so the permission lapses on its own.
func (l *Loop) renewPermit(last *permitSent, failing *string) {
	id := clientv3.LeaseID(l.writeLease.Load())
	if id == 0 || l.opt.Fence == nil {
		return
	}
	ls := l.lease.State()
	if ls.ID != id {
		return
	}
	until := writeDeadline(ls)
	if !time.Now().Before(until) || (ls.AckedSentAt.Equal(last.acked) && time.Since(last.at) < time.Second) {
		return
	}
	if err := l.opt.Fence.Allow(until, ls.AckedSentAt, ls.TTL); err != nil {
		if msg := err.Error(); msg != *failing {
			*failing = msg
			l.log.Warn("fence keeper: cannot renew the write permission", "err", err)
		}
		return
	}
	*failing = ""
	*last = permitSent{acked: ls.AckedSentAt, at: time.Now()}
}
