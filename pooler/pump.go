package pooler

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

var errDetached = errors.New("pooler: client left during the transaction")

// errInlineIdle: an inline pump stops at the end of the answers inside a
// transaction; the server stays attached.
var errInlineIdle = errors.New("pooler: inline pump idle in transaction")

// errHandoff: an inline pump passes the rest of the answers to the
// server's pump goroutine.
var errHandoff = errors.New("pooler: pump continues on the server goroutine")

// ends reports whether server message t completes a request of kind.
func ends(kind, t byte) bool {
	switch kind {
	case 'P':
		return t == '1'
	case 'B':
		return t == '2'
	case 'C':
		return t == '3'
	case 'D':
		return t == 'T' || t == 'n'
	case 'E':
		return t == 'C' || t == 'I' || t == 's'
	case 'S', 'Q', 'F':
		return t == 'Z'
	}
	return false
}

// push queues a request; c.mu held. It returns false when the server will
// skip the request (after an error, until Sync) and no answer is coming.
func (s *server) push(e pend) bool {
	if s.skip && e.kind != 'S' {
		if e.kind == 'P' && e.id != 0 {
			delete(s.prepared, e.id)
			s.nprep.Store(int32(len(s.prepared)))
		}
		return false
	}
	if e.kind == 'S' {
		s.skip = false
	}
	if e.act != actForward {
		s.special.Add(1)
	} else if e.kind != 0 {
		s.queryBegin()
	}
	s.q = append(s.q, e)
	return true
}

func (s *server) pop() pend {
	e := s.q[s.qh]
	s.qh++
	if s.qh == len(s.q) {
		s.q, s.qh = s.q[:0], 0
	}
	if e.act != actForward {
		s.special.Add(-1)
	}
	return e
}

func (s *server) queued() int { return len(s.q) - s.qh }

// emitSynth writes the local answers at the head of the queue; c.mu held.
func (s *server) emitSynth() {
	for s.queued() > 0 && s.q[s.qh].act == actSynth {
		e := s.pop()
		writeBytes(s.cw, e.msg, 0, 0, 0, 4)
	}
}

// forgetFailed unmarks a statement whose Parse the server did not run.
func (s *server) forgetFailed(e pend) {
	if e.kind == 'P' && e.id != 0 {
		delete(s.prepared, e.id)
		s.nprep.Store(int32(len(s.prepared)))
	}
}

// skipToSync drops queued requests the server skips after an error in the
// extended protocol; c.mu held.
func (s *server) skipToSync() {
	for s.queued() > 0 {
		if s.q[s.qh].kind == 'S' {
			return
		}
		s.forgetFailed(s.pop())
	}
	s.skip = true
}

// pumpWorker is the server's goroutine: it pumps for each client that
// attaches until the server closes.
func (s *server) pumpWorker() {
	for {
		select {
		case c := <-s.attach:
			s.pump(c)
		case <-s.done:
			return
		}
	}
}

// pump forwards the server's answers to client c while c is attached. It
// returns the server to its pool after ReadyForQuery 'I' with nothing left
// in flight (transaction and statement mode), or when c leaves.
func (s *server) pump(c *client) {
	defer func() {
		if r := recover(); r != nil {
			// A bug: end this client and this server connection only.
			c.p.recovered(r, "server pump", "client", c.id, "server", s.id)
			c.conn.Close()
			s.close()
			if lockWithin(&c.mu, time.Second) {
				if c.srv == s {
					c.srv = nil
				}
				if s.waiting {
					s.waiting = false
					s.holdCh <- struct{}{}
				}
				c.mu.Unlock()
			}
		}
	}()
	if h := c.p.hooks.pump; h != nil {
		h()
	}
	// A client that detached (see client.detach) waits on pumpMu for
	// this goroutine; a pump that starts after that finds it detached.
	c.pumpMu.Lock()
	defer c.pumpMu.Unlock()
	c.mu.Lock()
	mine := c.srv == s
	c.mu.Unlock()
	if !mine {
		return
	}
	if err := s.pumpLoop(c, false); err != nil {
		s.pumpFailed(c, err)
	}
}

// truncatedError is a server that failed in the middle of a message the
// pump was forwarding: the client has part of it, so nothing more can
// be written to it.
type truncatedError struct{ err error }

func (e *truncatedError) Error() string { return "server message cut short: " + e.err.Error() }
func (e *truncatedError) Unwrap() error { return e.err }

// truncated marks a failure inside a message: a failed read of the
// server (a failed write to the client, a *sinkError, is left alone).
func truncated(err error) error {
	var se *sinkError
	if errors.As(err, &se) {
		return err
	}
	return &truncatedError{err}
}

// pumpFailed cleans up after the pump stopped on an error. A client
// still attached is ended, as PgBouncer does, with the server's own
// error already forwarded (for example FATAL 57P01 after
// pg_terminate_backend) and then the pooler's farewell: the reason
// KILL gave, or "server conn crashed?".
func (s *server) pumpFailed(c *client, err error) {
	c.mu.Lock()
	attached := c.srv == s
	leaving := c.leaving
	c.mu.Unlock()
	if attached && !leaving {
		c.p.log.Debug("pooler: server connection lost", "client", c.id, "server", s.id, "err", err)
		var te *truncatedError
		if !errors.As(err, &te) && s.cw.Flush() == nil {
			le := c.kill.Load()
			if le == nil {
				le = &loginError{code: errServerLost.code, msg: errServerLost.msg}
			}
			c.farewell(le)
		}
		c.conn.Close()
	}
	c.mu.Lock()
	if c.srv == s {
		c.srv = nil
	}
	c.mu.Unlock()
	s.close()
}

func (s *server) pumpLoop(c *client, inline bool) error {
	br, cw := s.br, s.cw
	// held tracks c.mu so that a panic (a bug) does not leave it locked
	// for the client goroutine and the recovery (see pump).
	held := false
	defer func() {
		if held {
			c.mu.Unlock()
		}
	}()
	for {
		if br.Buffered() == 0 && cw.Buffered() > 0 {
			if err := cw.Flush(); err != nil {
				return err
			}
		}
		hdr, err := br.Peek(5)
		if err != nil {
			return err
		}
		t := hdr[0]
		n := int(int32(binary.BigEndian.Uint32(hdr[1:5]))) - 4
		if n < 0 || n > maxServerMsg {
			return fmt.Errorf("%w: server message %q with length %d", ErrProtocol, t, n+4)
		}
		var stop bool
		switch t {
		case 'D', 'd', 'N', 'A', 't', 'G', 'H', 'W', 'V', 'c', 'v':
			stop, err = s.pumpRow(c, t, n, inline, &held)
		case 'S':
			err = s.pumpParameter(c, n, &held)
		case 'Z':
			stop, err = s.pumpReady(c, n, inline, &held)
		case '1', '2', '3', 'T', 'n', 'C', 'I', 's', 'E':
			err = s.pumpReply(c, t, n, &held)
		default:
			c.stats.recv(n + 5)
			if err = copyBody(cw, br, n+5); err != nil {
				err = truncated(err)
			}
		}
		if stop || err != nil {
			return err
		}
	}
}

// lock and unlock take and give back c.mu, keeping *held true exactly
// while it is held (pumpLoop's panic recovery reads it).
func lock(c *client, held *bool)   { c.mu.Lock(); *held = true }
func unlock(c *client, held *bool) { *held = false; c.mu.Unlock() }

// pumpRow forwards a data-bearing message (rows, notices, copy data,
// notifications); in a copy out of an inline exchange it hands the
// server over to the pump goroutine (stop, errHandoff).
func (s *server) pumpRow(c *client, t byte, n int, inline bool, held *bool) (bool, error) {
	br, cw := s.br, s.cw
	if s.special.Load() != 0 {
		lock(c, held)
		s.emitSynth()
		swallow := s.queued() > 0 && s.q[s.qh].act == actSwallow
		unlock(c, held)
		if swallow {
			br.Discard(5 + n)
			return false, nil
		}
	}
	c.stats.recv(n + 5)
	if err := copyBody(cw, br, n+5); err != nil {
		return true, truncated(err)
	}
	if inline && (t == 'G' || t == 'W') {
		if err := cw.Flush(); err != nil {
			return true, err
		}
		return true, errHandoff
	}
	return false, nil
}

// pumpParameter records a ParameterStatus the client's session tracks and
// forwards it unless the pooler's own query asked for it.
func (s *server) pumpParameter(c *client, n int, held *bool) error {
	br, cw := s.br, s.cw
	br.Discard(5)
	b, err := readBody(br, n)
	if err != nil {
		return truncated(err)
	}
	k, rest, _ := cstring(b)
	v, _, _ := cstring(rest)
	lock(c, held)
	if i := c.p.trackIndex(k); i >= 0 {
		s.tracked[i] = v
		c.setTracked(i, v)
	}
	swallow := s.queued() > 0 && s.q[s.qh].act == actSwallow
	unlock(c, held)
	if !swallow {
		writeHeader(cw, 'S', n)
		cw.Write(b)
	}
	return nil
}

// pumpReply forwards a protocol reply (parse/bind/close complete, row
// description, command complete, error, ...), swallowing the answers to
// the pooler's own messages and keeping the prepared-statement book in
// step.
func (s *server) pumpReply(c *client, t byte, n int, held *bool) error {
	br, cw := s.br, s.cw
	lock(c, held)
	s.emitSynth()
	swallow := false
	if s.queued() > 0 {
		h := s.q[s.qh]
		switch {
		case h.kind == 'Q' || h.kind == 'F' || h.kind == 'S':
			swallow = h.act == actSwallow
		case t == 'E':
			s.forgetFailed(s.pop())
			s.skipToSync()
		case ends(h.kind, t):
			swallow = s.pop().act == actSwallow
		}
	}
	if t == 'C' && n < 64 {
		// DEALLOCATE ALL / DISCARD ALL drop every statement on this
		// server, the pooler's included.
		if b, err := br.Peek(5 + n); err == nil {
			if tag := b[5:]; bytes.HasPrefix(tag, []byte("DEALLOCATE ALL")) || bytes.HasPrefix(tag, []byte("DISCARD ALL")) {
				clear(s.prepared)
				s.nprep.Store(0)
			}
		}
	}
	if swallow {
		unlock(c, held)
		br.Discard(5 + n)
		return nil
	}
	c.stats.recv(n + 5)
	err := copyBody(cw, br, n+5)
	s.emitSynth()
	unlock(c, held)
	if err != nil {
		return truncated(err)
	}
	return nil
}

// pumpReady handles ReadyForQuery: it forwards it (unless it answers the
// pooler's own query) and, when nothing more is expected, decides what
// becomes of the server (readyDone). stop reports that pumpLoop returns.
func (s *server) pumpReady(c *client, n int, inline bool, held *bool) (bool, error) {
	br, cw := s.br, s.cw
	br.Discard(5)
	if n != 1 {
		return true, fmt.Errorf("%w: ReadyForQuery of length %d", ErrProtocol, n+4)
	}
	status, err := br.ReadByte()
	if err != nil {
		return true, truncated(err)
	}
	lock(c, held)
	s.emitSynth()
	swallow := false
	if s.queued() > 0 && ends(s.q[s.qh].kind, 'Z') {
		swallow = s.pop().act == actSwallow
	}
	s.emitSynth()
	s.status = status
	if !swallow {
		writeBytes(cw, 'Z', 0, 0, 0, 5, status)
	}
	if s.queued() > 0 {
		unlock(c, held)
		return false, nil
	}
	s.queryEnd(status)
	return s.readyDone(c, status, inline, held)
}

// readyDone decides, c.mu held and nothing more expected, what becomes of
// the server after a ReadyForQuery with status: a leaving client's reset
// query done gives it back; session mode keeps it; inside a transaction
// it stays with the client (inline: the client goroutine reads on;
// statement mode refuses the transaction); idle in transaction or
// statement mode it goes back to the pool once the client goroutine has
// written its batch.
func (s *server) readyDone(c *client, status byte, inline bool, held *bool) (bool, error) {
	cw := s.cw
	if c.leaving {
		// Only the pooler's reset query was left; give the server back
		// once the leaving client's goroutine has finished writing it (its
		// Flush may return after this answer).
		if !s.waitHold(c, held) {
			return true, errDetached
		}
		c.srv = nil
		s.client.Store(nil)
		unlock(c, held)
		s.pool.release(s, status == 'I')
		return true, nil
	}
	if c.mode == modeSession {
		unlock(c, held)
		return false, nil
	}
	if status != 'I' {
		unlock(c, held)
		if inline && c.mode != modeStatement {
			// In a transaction and nothing more to answer: let the client
			// goroutine read the client again.
			if err := cw.Flush(); err != nil {
				return true, err
			}
			return true, errInlineIdle
		}
		if c.mode == modeStatement {
			if cw.Flush() == nil {
				c.farewell(&loginError{code: codeFeatureNotSupp, msg: "transaction blocks not allowed in statement pooling mode"})
			}
			c.conn.Close()
			return true, fmt.Errorf("pooler: transaction in statement mode")
		}
		return false, nil
	}
	// The client goroutine may be writing its next batch: wait for it to
	// finish, then decide again.
	if !s.waitHold(c, held) {
		return true, errDetached
	}
	if s.queued() > 0 {
		unlock(c, held)
		return false, nil
	}
	if err := cw.Flush(); err != nil {
		unlock(c, held)
		return true, err
	}
	c.srv = nil
	s.client.Store(nil)
	unlock(c, held)
	s.pool.release(s, true)
	return true, nil
}

// waitHold waits, c.mu held, while the client goroutine holds the server
// for a write; it reports false (c.mu given back) when the server was
// detached from the client meanwhile.
func (s *server) waitHold(c *client, held *bool) bool {
	for s.hold {
		s.waiting = true
		unlock(c, held)
		<-s.holdCh
		lock(c, held)
	}
	if c.srv != s {
		unlock(c, held)
		return false
	}
	return true
}
