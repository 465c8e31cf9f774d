package pooler

import (
	"errors"
	"time"
)

// How a session the pooler ends says why. Every close the pooler
// initiates (a timeout, a lost server, KILL, KILL_CLIENT, shutdown, a
// protocol violation) writes one FATAL ErrorResponse with a SQLSTATE
// before the socket closes, so that a driver reports the reason and its
// pool discards the connection, instead of an "unexpected EOF". As in
// PgBouncer the pooler's own reasons carry SQLSTATE 08P01 and
// PgBouncer's wording (query_wait_timeout, client_idle_timeout, "server
// conn crashed?", "admin forced disconnect", ...); a refusal that came
// from Postgres keeps Postgres's code and message.
//
// Whoever writes the farewell must own the client's write side: the
// client goroutine once no pump can write to the client any more
// (detach), or the pump when the server under it failed (pumpFailed).
// bye makes sure only one of them writes it.

// Reasons the pooler gives, with PgBouncer's wording.
var (
	errClientIdle  = &loginError{code: codeProtocolViolation, msg: "client_idle_timeout"}
	errIdleInTx    = &loginError{code: codeProtocolViolation, msg: "idle transaction timeout"}
	errServerLost  = &loginError{code: codeProtocolViolation, msg: "server conn crashed?"}
	errKilledAdmin = &loginError{code: codeProtocolViolation, msg: "admin forced disconnect"}
	errKilledDB    = &loginError{code: codeProtocolViolation, msg: "database removed"}
	errShutdown    = &loginError{code: codeProtocolViolation, msg: "server shutting down"}
)

// farewellFor is the message that ends a session that stopped with err,
// or nil when the client itself left (EOF, Terminate, a broken socket).
func (c *client) farewellFor(err error) *loginError {
	if k := c.kill.Load(); k != nil {
		return k
	}
	var le *loginError
	var sink *sinkError
	switch {
	case err == nil, errors.Is(err, errTerminate):
		return nil
	case errors.As(err, &le):
		return le
	case errors.As(err, &sink):
		// The client goroutine's copies go to the server.
		return &loginError{code: errServerLost.code, msg: errServerLost.msg, cause: err.Error()}
	case errors.Is(err, ErrProtocol):
		return &loginError{code: codeProtocolViolation, msg: err.Error()}
	}
	return nil
}

// farewell writes the session's last message, once. The caller owns the
// client's write side.
func (c *client) farewell(le *loginError) {
	if le == nil || !c.bye.CompareAndSwap(false, true) {
		return
	}
	var m msgBuilder
	m.errorFields("FATAL", le.code, le.msg, le.detail)
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.conn.Write(m.b)
}

// detach takes the client's server away before the client goroutine
// writes a farewell: the server (in an unknown state) is closed, and the
// pump goroutines that may still write to the client are waited for.
// A pump stuck writing to a client that does not read gives up after
// a second (the write deadline).
func (c *client) detach() {
	if b := c.batch; b != nil {
		c.batch = nil
		c.mu.Lock()
		b.hold = false
		c.mu.Unlock()
	}
	c.mu.Lock()
	s := c.srv
	c.srv = nil
	if s != nil && s.waiting {
		s.waiting = false
		s.holdCh <- struct{}{}
	}
	c.mu.Unlock()
	if s != nil {
		s.close()
	}
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.pumpMu.Lock() // wait for a pump goroutine still serving c
	c.pumpMu.Unlock()
}

// startPump hands the answers of s to its pump goroutine.
func (c *client) startPump(s *server) { s.attach <- c }

// endBy asks a client's session to end with reason (KILL, KILL_CLIENT,
// DISABLE, shutdown), from any goroutine: its reads are interrupted, a
// wait for a server is woken, and its server connection is closed. The
// client goroutine (or the pump, if the server goes first) then writes
// the farewell.
func (c *client) endBy(reason *loginError) {
	if !c.kill.CompareAndSwap(nil, reason) {
		return
	}
	c.conn.SetReadDeadline(time.Unix(1, 0))
	if pl := c.pool; pl != nil {
		pl.mu.Lock()
		if c.wake != nil {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		pl.mu.Unlock()
	}
	c.mu.Lock()
	s := c.srv
	c.mu.Unlock()
	if s != nil {
		s.close()
	}
}

// killed is the error a client goroutine returns once endBy asked it to
// stop.
func (c *client) killed() error {
	if k := c.kill.Load(); k != nil {
		return k
	}
	return nil
}
