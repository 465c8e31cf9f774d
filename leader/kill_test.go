package leader

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestKilledLoopLeavesPostgresRunning: Kill (pgha's SIGUSR2 detach, a
// test's kill -9) then the end of the context, while a cycle is running:
// Run returns without the shutdown cycle, so the primary keeps running
// and the leader key stays for the next daemon to adopt. Both signals
// are pending when the cycle ends; which one the loop takes must not be
// left to chance, so the race is run many times.
func TestKilledLoopLeavesPostgresRunning(t *testing.T) {
	for i := range 30 {
		w := newWorld(t, nil, "a")
		w.bootstrap()
		a := w.m("a")
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		a.pg.set(func(p *fakePG) {
			p.onStatus = func() {
				once.Do(func() {
					close(entered)
					<-release
				})
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.loop.Run(ctx) }()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop never read its postgres")
		}
		a.loop.Kill()
		cancel()
		close(release)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after Kill")
		}
		if s := a.pg.state(); !s.Writable || a.pg.called("stop") != 0 || w.view().Leader != "a" {
			t.Fatalf("run %d: after Kill the primary is %+v (%d stops), leader key %q: the loop shut down", i, s, a.pg.called("stop"), w.view().Leader)
		}
	}
}
