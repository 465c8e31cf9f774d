package pooler

import (
	"fmt"
	"net"
	"time"
)

// testHooks are called at points the tests need to reach (to make a
// connection's goroutine panic, or to hold a cancel request on its way);
// all nil outside tests.
type testHooks struct {
	login   func() // at the start of every login
	session func() // when a session starts on a goroutine
	pump    func() // when a server's pump goroutine takes a client
	cancel  func() // after a cancel request found its server, before sending it
	// authQuery: when an auth_query lookup has its slot, before it runs.
	authQuery func()
}

// admit counts an accepted connection against max_pending_logins, or
// refuses it at once (SQLSTATE 53300) when that many are logging in
// already: connections that never finish a login are bounded in number
// (and each in time, by client_login_timeout).
func (p *Pooler) admit(conn net.Conn) bool {
	max := int64(p.cfg.MaxPendingLogins)
	if n := p.pending.Add(1); max > 0 && n > max {
		p.pending.Add(-1)
		p.metrics.refusedLogins.Inc()
		var m msgBuilder
		m.errorMsg("FATAL", codeTooManyConns, fmt.Sprintf("too many connections are logging in (max_pending_logins %d)", max))
		// A new socket's send buffer is empty: this write does not wait.
		conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		conn.Write(m.b)
		conn.Close()
		return false
	}
	return true
}

// loginDone stops counting c against max_pending_logins (once).
func (p *Pooler) loginDone(c *client) {
	if c.loginPending {
		c.loginPending = false
		p.pending.Add(-1)
	}
}
