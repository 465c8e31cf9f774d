package pooler

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// loginError is an error sent to the client as FATAL before closing (at
// login, or as the farewell of a session, see farewell.go). detail goes
// to the client as the error's DETAIL; cause, when set, is for the
// pooler's log only (the client must not learn, for example, whether a
// user exists).
type loginError struct {
	code, msg string
	detail    string
	cause     string
}

func (e *loginError) Error() string {
	if e.cause != "" {
		return "pooler: " + e.msg + " (" + e.cause + ")"
	}
	return "pooler: " + e.msg
}

// loginDeadline is when a client accepted now must have logged in
// (client_login_timeout; zero when it is 0).
func (p *Pooler) loginDeadline() time.Time {
	if d := p.cfg.ClientLoginTimeout.D(); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

// startupLimit is the largest startup-phase packet accepted: Postgres's
// MAX_STARTUP_PACKET_LENGTH, or max_packet_size when that is smaller.
func (p *Pooler) startupLimit() int {
	if m := int(p.cfg.MaxPacketSize); m > 0 && m < maxStartupLen {
		return m
	}
	return maxStartupLen
}

// readStartup handles SSLRequest, GSSENCRequest and CancelRequest and
// returns the StartupMessage parameters (nil after a cancel request).
func (c *client) readStartup() (map[string]string, error) {
	limit := c.p.startupLimit()
	for i := 0; i < 3; i++ {
		code, body, err := readStartupPacket(c.conn, limit)
		if err != nil {
			return nil, err
		}
		switch code {
		case sslRequestCode:
			if c.tls || len(body) != 0 {
				return nil, fmt.Errorf("%w: SSLRequest after TLS or with a body", ErrProtocol)
			}
			if c.p.tls == nil {
				if _, err := c.conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := c.conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(plainConn(c.conn), c.p.tls)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("pooler: TLS handshake with client: %w", err)
			}
			c.conn = tc
			c.tls = true
		case gssEncRequestCode:
			if len(body) != 0 {
				return nil, fmt.Errorf("%w: GSSENCRequest with a body", ErrProtocol)
			}
			if _, err := c.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case cancelRequestCode:
			if len(body) != 8 {
				return nil, fmt.Errorf("%w: CancelRequest of %d bytes", ErrProtocol, len(body)+8)
			}
			c.p.cancel(binary.BigEndian.Uint32(body), binary.BigEndian.Uint32(body[4:]))
			return nil, nil
		default:
			if code>>16 != 3 {
				return nil, &loginError{code: codeFeatureNotSupp, msg: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff)}
			}
			if c.p.cfg.ClientTLS.SSLMode == "require" && !c.tls {
				return nil, &loginError{code: codeInvalidAuthSpec, msg: "SSL required"}
			}
			params, err := parseStartupParams(body)
			if err != nil {
				return nil, err
			}
			if params["user"] == "" {
				return nil, &loginError{code: codeInvalidAuthSpec, msg: "no PostgreSQL user name specified in startup packet"}
			}
			if params["database"] == "" {
				params["database"] = params["user"]
			}
			return params, nil
		}
	}
	return nil, fmt.Errorf("%w: too many startup negotiation packets", ErrProtocol)
}

// readPassword reads a PasswordMessage/SASL response during login.
func (c *client) readPassword() ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(c.conn, h[:]); err != nil {
		return nil, err
	}
	if h[0] != 'p' {
		return nil, fmt.Errorf("%w: expected password message, got %q", ErrProtocol, h[0])
	}
	n, err := bodyLen(h[:], c.p.startupLimit())
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.conn, b); err != nil {
		return nil, err
	}
	return b, nil
}

// authFailed is Postgres's answer to a wrong password, and the pooler's
// to every failed password check (unknown user included); why is logged.
func authFailed(user, why string) error {
	return &loginError{code: codeInvalidPassword, msg: fmt.Sprintf("password authentication failed for user %q", user), cause: why}
}

// authenticate runs method against the client and returns the credentials
// to log in to Postgres as that user. A user the pooler does not know, or
// whose secret cannot check a password (empty), gets the same exchange as
// a known one (a SCRAM salt and iteration count shaped like a real
// secret's, an md5 salt, a password prompt) and the same failure at the
// end, so that logins cannot tell which users exist.
func (c *client) authenticate(method, user string, sec secret, known bool) (secret, error) {
	var m msgBuilder
	if method == "trust" {
		_, err := c.conn.Write(m.begin('R').i32(0).end().b)
		return sec, err
	}
	why := "wrong password"
	if !known {
		sec, why = secret{}, "no such user"
	} else if !sec.usable() {
		known, sec, why = false, secret{}, "the user's password is empty and cannot be checked"
	} else {
		if method == "md5" && sec.scram != nil {
			method = "scram-sha-256" // md5 cannot be checked against a SCRAM secret
		}
		if method == "scram-sha-256" && sec.md5 != "" {
			method = "md5" // SCRAM cannot be checked against an md5 hash
		}
	}
	switch method {
	case "plain":
		if _, err := c.conn.Write(m.begin('R').i32(3).end().b); err != nil {
			return secret{}, err
		}
		b, err := c.readPassword()
		if err != nil {
			return secret{}, err
		}
		pw, _, _ := cstring(b)
		ok := false
		switch {
		case !known:
		case sec.plain != "":
			ok = equal(pw, sec.plain)
		case sec.md5 != "":
			ok = equal(md5Password(user, pw), sec.md5)
		case sec.scram != nil:
			_, sk, _, err := scramKeys(pw, sec.scram.salt, sec.scram.iter)
			ok = err == nil && equal(string(sk), string(sec.scram.storedKey))
		}
		if !ok {
			return secret{}, authFailed(user, why)
		}
		return secret{plain: pw}, nil
	case "md5":
		stored := sec.md5
		if sec.plain != "" {
			stored = md5Password(user, sec.plain)
		}
		salt := randUint32()
		var sb [4]byte
		binary.BigEndian.PutUint32(sb[:], salt)
		if _, err := c.conn.Write(m.begin('R').i32(5).raw(sb[:]).end().b); err != nil {
			return secret{}, err
		}
		b, err := c.readPassword()
		if err != nil {
			return secret{}, err
		}
		got, _, _ := cstring(b)
		if !known || !equal(got, md5Response(stored, sb[:])) {
			return secret{}, authFailed(user, why)
		}
		return secret{plain: sec.plain, md5: stored}, nil
	case "scram-sha-256":
		vs := sec.scram
		switch {
		case !known:
			vs = mockSecret(c.p.mockKey[:], user)
		case vs == nil:
			var err error
			if vs, err = scramFromPlain(c.p.mockKey[:], user, sec.plain); err != nil {
				return secret{}, err
			}
		}
		if _, err := c.conn.Write(m.begin('R').i32(10).str("SCRAM-SHA-256").byte1(0).end().b); err != nil {
			return secret{}, err
		}
		b, err := c.readPassword()
		if err != nil {
			return secret{}, err
		}
		mech, rest, ok := cstring(b)
		if !ok || mech != "SCRAM-SHA-256" || len(rest) < 4 {
			return secret{}, &loginError{code: codeProtocolViolation, msg: fmt.Sprintf("client selected an invalid SASL authentication mechanism %q", mech)}
		}
		l := int(int32(binary.BigEndian.Uint32(rest)))
		if l < 0 || l > len(rest)-4 {
			return secret{}, fmt.Errorf("%w: bad SASLInitialResponse length", ErrProtocol)
		}
		srv := &scramServer{sec: vs}
		first, err := srv.first(string(rest[4 : 4+l]))
		if err != nil {
			return secret{}, &loginError{code: codeProtocolViolation, msg: err.Error()}
		}
		m.b = m.b[:0]
		if _, err := c.conn.Write(m.begin('R').i32(11).raw([]byte(first)).end().b); err != nil {
			return secret{}, err
		}
		if b, err = c.readPassword(); err != nil {
			return secret{}, err
		}
		final, ck, ok, err := srv.final(string(b))
		if err != nil {
			return secret{}, &loginError{code: codeProtocolViolation, msg: err.Error()}
		}
		if !ok || !known {
			return secret{}, authFailed(user, why)
		}
		m.b = m.b[:0]
		if _, err := c.conn.Write(m.begin('R').i32(12).raw([]byte(final)).end().b); err != nil {
			return secret{}, err
		}
		return secret{plain: sec.plain, scram: vs, clientKey: ck}, nil
	}
	return secret{}, &loginError{code: codeInvalidAuthSpec, msg: fmt.Sprintf("unsupported auth_type %q", method)}
}

// login runs startup, authentication and the greeting. It returns false
// when the connection should just close (cancel request).
func (c *client) login(readOnly bool) (bool, error) {
	deadline := c.p.loginDeadline()
	c.conn.SetDeadline(deadline)
	if h := c.p.hooks.login; h != nil {
		h()
	}
	params, err := c.readStartup()
	if err != nil || params == nil {
		return false, err
	}
	user, db := params["user"], params["database"]
	c.user, c.db = user, db
	settings, err := c.p.startupSettings(params)
	if err != nil {
		return false, err
	}
	if max := c.p.cfg.MaxClientConn; max > 0 && c.p.nclients.Load() > int64(max) {
		return false, &loginError{code: codeTooManyConns, msg: "no more connections allowed (max_client_conn)"}
	}
	method, err := c.p.hbaMethod(c, db, user)
	if err != nil {
		return false, err
	}
	admin := db == "pgbouncer" || db == "pgha"
	sec, known, err := c.p.lookupUser(user, db, deadline)
	if err != nil && !admin {
		c.p.log.Warn("pooler: cannot look up a user with auth_query", "user", user, "db", db, "err", err)
		return false, &loginError{code: codeConnFailure, msg: "the pooler cannot check passwords right now (auth_query failed; its log says why)", cause: err.Error()}
	}
	cred, err := c.authenticate(method, user, sec, known)
	if err != nil {
		return false, err
	}
	if admin {
		if !c.p.isAdmin(user) && !c.p.isStats(user) {
			return false, &loginError{code: codeInvalidAuthSpec, msg: fmt.Sprintf("not allowed: user %q is in neither admin_users nor stats_users", user)}
		}
		c.p.loginDone(c)
		c.conn.SetDeadline(time.Time{})
		return true, c.p.serveAdmin(c)
	}
	entry, ok := c.p.dbEntry(db)
	if !ok {
		return false, errNoDatabase(db)
	}
	if st := c.p.dbState(db); st.disabled.Load() {
		return false, errDatabaseDisabled(db)
	}
	pl := c.p.getPool(poolKey{db: db, user: c.p.poolUser(entry, user), readOnly: readOnly})
	if entry.User != "" {
		// A forced user: the server login is the database entry's,
		// whoever the client is.
		pl.setCred(c.p.forcedCred(entry))
	} else {
		pl.setCred(cred)
	}
	c.pool, c.stats = pl, &pl.stats
	c.mode = pl.conf.mode
	c.track = c.mode != modeSession && c.p.cfg.MaxPreparedStatements > 0
	c.mu.Lock()
	c.tracked = settings // this client's until interned below
	c.mu.Unlock()
	sp, err := pl.greeting(c)
	if err != nil {
		return false, c.failWait(err, 0)
	}
	var m msgBuilder
	m.begin('R').i32(0).end()
	for k, v := range sp {
		if i := c.p.trackIndex(k); i >= 0 {
			c.mu.Lock()
			if c.tracked[i] == "" {
				c.setTracked(i, v)
			} else {
				v = c.tracked[i]
			}
			c.mu.Unlock()
		}
		m.paramStatus(k, v)
	}
	c.mu.Lock()
	c.tracked = pl.internTracked(c.tracked)
	c.mu.Unlock()
	c.pid, c.secret = c.p.registerCancel(c)
	m.begin('K').i32(int32(c.pid)).i32(int32(c.secret)).end()
	m.readyForQuery('I')
	if _, err := c.conn.Write(m.b); err != nil {
		return false, err
	}
	c.p.loginDone(c)
	c.conn.SetDeadline(time.Time{})
	return true, nil
}

// handleLogin runs startup and authentication for an accepted connection.
// It returns the client ready for its session, or nil after closing it
// (failed login, cancel request, console session). A panic anywhere in
// the login closes this connection only (see recovered).
func (p *Pooler) handleLogin(conn net.Conn, readOnly bool) (ret *client) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	conn = fastConn(conn)
	c := &client{p: p, id: p.nextID.Add(1), conn: conn, since: time.Now(), tracked: &noTracked, loginPending: true}
	p.nclients.Add(1)
	defer func() {
		if r := recover(); r != nil {
			p.recovered(r, "login", "client", c.id, "user", c.user, "db", c.db)
			ret = nil
			p.endLogin(c)
		}
	}()
	ok, err := c.login(readOnly)
	if err == nil && ok && c.pool != nil {
		return c
	}
	if err != nil {
		// The login deadline may have passed: give the last word a moment.
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		var le *loginError
		var ne net.Error
		var m msgBuilder
		switch {
		case errors.As(err, &le):
			c.conn.Write(m.errorMsg("FATAL", le.code, le.msg).b)
		case errors.Is(err, ErrProtocol):
			c.conn.Write(m.errorMsg("FATAL", codeProtocolViolation, err.Error()).b)
		case errors.As(err, &ne) && ne.Timeout():
			c.conn.Write(m.errorMsg("FATAL", codeProtocolViolation, "client_login_timeout").b)
		}
		p.log.Debug("pooler: login failed", "addr", conn.RemoteAddr().String(), "user", c.user, "db", c.db, "err", err)
	}
	p.endLogin(c)
	return nil
}

// endLogin releases what a connection that does not go on to a session
// holds.
func (p *Pooler) endLogin(c *client) {
	p.loginDone(c)
	if c.pid != 0 {
		p.unregisterCancel(c)
	}
	p.nclients.Add(-1)
	c.conn.Close()
}
