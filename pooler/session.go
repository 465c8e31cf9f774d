package pooler

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"
)

// session runs a logged-in client until it leaves. It runs on a fresh
// goroutine so that the deep login path's stack is not kept while idle.
func (p *Pooler) session(c *client) {
	p.addClient(c)
	p.runSession(c)
}

func (p *Pooler) runSession(c *client) {
	defer func() {
		if r := recover(); r != nil {
			p.recovered(r, "session", "client", c.id, "user", c.user, "db", c.db)
			p.endPanicked(c)
		}
	}()
	if h := p.hooks.session; h != nil {
		h()
	}
	err := c.serve()
	if errors.Is(err, errRespawn) {
		p.respawns.Add(1)
		if c.br != nil {
			putReader(c.br)
			c.br = nil
		}
		p.sessions.Add(1)
		go func() {
			defer p.sessions.Done()
			p.runSession(c)
		}()
		return
	}
	fw := c.farewellFor(err)
	if fw != nil {
		// The pooler ends this session: no server, no pump may write to
		// the client any more before the farewell does.
		c.detach()
	}
	c.cleanup()
	if c.br != nil {
		putReader(c.br)
		c.br = nil
	}
	if fw != nil {
		c.farewell(fw)
	}
	if err != nil && !errors.Is(err, errTerminate) && !errors.Is(err, io.EOF) {
		p.log.Debug("pooler: client session ended", "client", c.id, "err", err)
	}
	p.endSession(c)
}

// endSession forgets a client whose session is over.
func (p *Pooler) endSession(c *client) {
	p.unregisterCancel(c)
	p.removeClient(c)
	p.nclients.Add(-1)
	c.conn.Close()
}

// recovered counts and logs a panic that ended one connection's goroutine
// (a bug, not the client's fault; the connection is closed and the
// daemon goes on). Call it from a deferred function with recover()'s
// value.
func (p *Pooler) recovered(r any, where string, attrs ...any) {
	p.panicCount.Add(1)
	if p.metrics != nil {
		p.metrics.panics.Inc()
	}
	args := append([]any{"where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack())}, attrs...)
	p.log.Error("pooler: recovered from a panic (a bug: report it with this stack); what it was serving is closed", args...)
}

// guard runs f, recovering (counted and logged) from a panic in it, for
// the pooler's own goroutines that serve no single client.
func (p *Pooler) guard(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.recovered(r, what)
		}
	}()
	f()
}

// waitAll waits for wg; after a recovered panic, which may have left a
// goroutine stuck on a lock its panicking holder never released, at most
// 10 s, so that the pooler (and the daemon) can still stop.
func (p *Pooler) waitAll(what string, wg *sync.WaitGroup) {
	if p.panicCount.Load() == 0 {
		wg.Wait()
		return
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.log.Error("pooler: stopping without waiting longer for "+what+" (stuck since a recovered panic)", "panics", p.panicCount.Load())
	}
}

// lockWithin takes mu, or gives up after d: a goroutine that panicked
// while holding it never releases it.
func lockWithin(mu *sync.Mutex, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !mu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// endPanicked closes a client whose session goroutine panicked. Its
// server connection, in an unknown protocol state, is closed, not reused.
func (p *Pooler) endPanicked(c *client) {
	c.conn.Close() // first: a pump writing to the client fails and lets go of c.mu
	if b := c.batch; b != nil {
		c.batch = nil
		b.close()
	}
	if lockWithin(&c.mu, time.Second) {
		s := c.srv
		c.srv, c.leaving = nil, true
		if s != nil && s.waiting {
			s.waiting = false
			s.holdCh <- struct{}{}
		}
		c.mu.Unlock()
		if s != nil {
			s.close()
		}
	} else {
		p.log.Error("pooler: the panicked session held its client's lock; its server connection stays until it closes", "client", c.id)
	}
	if c.br != nil {
		c.br = nil // its state is unknown: let it go rather than pool it
	}
	p.endSession(c)
}
