package leader

import (
	"context"
	"time"
)

// watchdog polls every 100 ms. It renews the fence keeper's write
// permission while this node's writes are gated by a live lease. It wakes the loop as soon as a primary's
// postmaster dies, and it enforces DESIGN rule 1 even when the loop is
// stuck in a long action: if the local Postgres was last seen writable and the lease
// deadline passed by more than a beat, it pauses writes (OnFence) and
// stops Postgres immediately itself.
func (l *Loop) watchdog(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var sent permitSent
	failing := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.killed:
			return nil
		case <-tick.C:
		}
		l.renewPermit(&sent, &failing)
		ls := l.lease.State()
		if !l.primaryRunning.Load() || ls.TTL == 0 {
			continue
		}
		if !l.pg.Alive() {
			// The primary's postmaster died: run a cycle now rather than at
			// the next loop_wait (DESIGN rule 3, restart in place).
			l.primaryRunning.Store(false)
			l.log.Warn("postgres postmaster is gone on the primary")
			l.Wake()
			continue
		}
		late := ls.Deadline(margin(ls.TTL)).Add(250 * time.Millisecond)
		if ls.ID != 0 && time.Now().Before(late) {
			continue
		}
		l.log.Error("fencing watchdog: the loop did not fence in time; stopping postgres immediately")
		l.fence()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := l.pg.Stop(sctx, true); err != nil {
			l.log.Error("fencing watchdog: stop postgres", "err", err)
		}
		cancel()
		l.primaryRunning.Store(false)
	}
}
