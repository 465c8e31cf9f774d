package pooler

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// clientLoginTimeout bounds startup and authentication (PgBouncer's
// client_login_timeout default).
const clientLoginTimeout = 60 * time.Second

// loginError is an error sent to the client as FATAL before closing.
type loginError struct {
	code, msg string
}

func (e *loginError) Error() string { return "pooler: " + e.msg }

// readStartup handles SSLRequest, GSSENCRequest and CancelRequest and
// returns the StartupMessage parameters (nil after a cancel request).
func (c *client) readStartup() (map[string]string, error) {
	tlsDone := false
	for i := 0; i < 3; i++ {
		code, body, err := readStartupPacket(c.conn)
		if err != nil {
			return nil, err
		}
		switch code {
		case sslRequestCode:
			if tlsDone || len(body) != 0 {
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
			tlsDone = true
		case gssEncRequestCode:
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
				return nil, &loginError{codeFeatureNotSupp, fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff)}
			}
			if c.p.cfg.ClientTLS.SSLMode == "require" && !tlsDone {
				return nil, &loginError{codeInvalidAuthSpec, "SSL required"}
			}
			params, err := parseStartupParams(body)
			if err != nil {
				return nil, err
			}
			if params["user"] == "" {
				return nil, &loginError{codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet"}
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
	n, err := bodyLen(h[:], maxStartupLen)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.conn, b); err != nil {
		return nil, err
	}
	return b, nil
}

func authFailed(user string) error {
	return &loginError{codeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", user)}
}

// authenticate runs method against the client and returns the credentials
// to log in to Postgres as that user.
func (c *client) authenticate(method, user string, sec secret, known bool) (secret, error) {
	var m msgBuilder
	if method == "trust" {
		_, err := c.conn.Write(m.begin('R').i32(0).end().b)
		return sec, err
	}
	if !known {
		return secret{}, authFailed(user)
	}
	if method == "md5" && sec.scram != nil {
		method = "scram-sha-256" // md5 cannot be checked against a SCRAM secret
	}
	if method == "scram-sha-256" && sec.md5 != "" {
		method = "md5" // SCRAM cannot be checked against an md5 hash
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
		case sec.plain != "":
			ok = pw == sec.plain
		case sec.md5 != "":
			ok = md5Password(user, pw) == sec.md5
		case sec.scram != nil:
			_, sk, _, err := scramKeys(pw, sec.scram.salt, sec.scram.iter)
			ok = err == nil && string(sk) == string(sec.scram.storedKey)
		}
		if !ok {
			return secret{}, authFailed(user)
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
		if got != md5Response(stored, sb[:]) {
			return secret{}, authFailed(user)
		}
		return secret{plain: sec.plain, md5: stored}, nil
	case "scram-sha-256":
		vs := sec.scram
		if vs == nil {
			var err error
			if vs, err = scramFromPlain(sec.plain); err != nil {
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
			return secret{}, &loginError{codeProtocolViolation, fmt.Sprintf("client selected an invalid SASL authentication mechanism %q", mech)}
		}
		l := int(int32(binary.BigEndian.Uint32(rest)))
		if l < 0 || l > len(rest)-4 {
			return secret{}, fmt.Errorf("%w: bad SASLInitialResponse length", ErrProtocol)
		}
		srv := &scramServer{sec: vs}
		first, err := srv.first(string(rest[4 : 4+l]))
		if err != nil {
			return secret{}, &loginError{codeProtocolViolation, err.Error()}
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
			return secret{}, &loginError{codeProtocolViolation, err.Error()}
		}
		if !ok {
			return secret{}, authFailed(user)
		}
		m.b = m.b[:0]
		if _, err := c.conn.Write(m.begin('R').i32(12).raw([]byte(final)).end().b); err != nil {
			return secret{}, err
		}
		return secret{plain: sec.plain, scram: vs, clientKey: ck}, nil
	}
	return secret{}, &loginError{codeInvalidAuthSpec, fmt.Sprintf("unsupported auth_type %q", method)}
}

// lookupUser finds a user's secret in auth_file, else through auth_query.
func (p *Pooler) lookupUser(user, db string) (secret, bool, error) {
	p.mu.Lock()
	sec, ok := p.users[user]
	p.mu.Unlock()
	if ok || p.cfg.AuthQuery == "" {
		return sec, ok, nil
	}
	p.mu.Lock()
	asec, aok := p.users[p.cfg.AuthUser]
	p.mu.Unlock()
	if !aok {
		return secret{}, false, fmt.Errorf("pooler: auth_user %q is not in auth_file", p.cfg.AuthUser)
	}
	tmp := &pool{p: p, key: poolKey{db: db, user: p.cfg.AuthUser}, cred: asec}
	addr, err := p.target(false)
	if err != nil {
		return secret{}, false, err
	}
	s, err := p.dialServer(p.ctx, tmp, addr)
	if err != nil {
		return secret{}, false, fmt.Errorf("pooler: auth_query login as %q: %w", p.cfg.AuthUser, err)
	}
	defer s.close()
	q := strings.ReplaceAll(p.cfg.AuthQuery, "$1", "'"+strings.ReplaceAll(user, "'", "''")+"'")
	rows, err := s.simpleQuery(q, p.cfg.ServerConnectTimeout.D())
	if err != nil {
		return secret{}, false, fmt.Errorf("pooler: auth_query: %w", err)
	}
	if len(rows) == 0 || len(rows[0]) < 2 || rows[0][1] == nil {
		return secret{}, false, nil
	}
	return parseSecret(*rows[0][1]), true, nil
}

// login runs startup, authentication and the greeting. It returns false
// when the connection should just close (cancel request).
func (c *client) login(readOnly bool) (bool, error) {
	c.conn.SetDeadline(time.Now().Add(clientLoginTimeout))
	params, err := c.readStartup()
	if err != nil || params == nil {
		return false, err
	}
	user, db := params["user"], params["database"]
	c.user, c.db = user, db
	if max := c.p.cfg.MaxClientConn; max > 0 && c.p.nclients.Load() > int64(max) {
		return false, &loginError{codeTooManyConns, "no more connections allowed (max_client_conn)"}
	}
	method, err := c.p.hbaMethod(c, db, user)
	if err != nil {
		return false, err
	}
	admin := db == "pgbouncer" || db == "pgha"
	sec, known, err := c.p.lookupUser(user, db)
	if err != nil && !admin {
		return false, err
	}
	cred, err := c.authenticate(method, user, sec, known)
	if err != nil {
		return false, err
	}
	if admin {
		if !c.p.isAdmin(user) && !c.p.isStats(user) {
			return false, &loginError{codeInvalidAuthSpec, fmt.Sprintf("not allowed: user %q is in neither admin_users nor stats_users", user)}
		}
		c.conn.SetDeadline(time.Time{})
		return true, c.p.serveAdmin(c)
	}
	pl := c.p.getPool(poolKey{db: db, user: user, readOnly: readOnly})
	pl.setCred(cred)
	c.pool, c.stats = pl, &pl.stats
	c.mode = parseMode(c.p.cfg.PoolMode)
	c.track = c.mode != modeSession && c.p.cfg.MaxPreparedStatements > 0
	var tracked [nTracked]string // this client's until interned below
	for k, v := range params {
		if i := trackedIndex(k); i >= 0 {
			tracked[i] = v
		}
	}
	c.mu.Lock()
	c.tracked = &tracked
	c.mu.Unlock()
	sp, err := pl.greeting(c)
	if err != nil {
		var se *serverError
		if errors.As(err, &se) {
			return false, &loginError{se.Code, se.Message}
		}
		return false, &loginError{codeConnFailure, err.Error()}
	}
	var m msgBuilder
	m.begin('R').i32(0).end()
	for k, v := range sp {
		if i := trackedIndex(k); i >= 0 {
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
	c.conn.SetDeadline(time.Time{})
	return true, nil
}

// handleLogin runs startup and authentication for an accepted connection.
// It returns the client ready for its session, or nil after closing it
// (failed login, cancel request, console session).
func (p *Pooler) handleLogin(conn net.Conn, readOnly bool) *client {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	conn = fastConn(conn)
	c := &client{p: p, id: p.nextID.Add(1), conn: conn, since: time.Now(), tracked: &noTracked}
	p.nclients.Add(1)
	ok, err := c.login(readOnly)
	if err == nil && ok && c.pool != nil {
		return c
	}
	if err != nil {
		var le *loginError
		if errors.As(err, &le) {
			var m msgBuilder
			c.conn.Write(m.errorMsg("FATAL", le.code, le.msg).b)
		} else if errors.Is(err, ErrProtocol) {
			var m msgBuilder
			c.conn.Write(m.errorMsg("FATAL", codeProtocolViolation, err.Error()).b)
		}
		p.log.Debug("pooler: login failed", "addr", conn.RemoteAddr().String(), "user", c.user, "db", c.db, "err", err)
	}
	if c.pid != 0 {
		p.unregisterCancel(c)
	}
	p.nclients.Add(-1)
	c.conn.Close()
	return nil
}

// session runs a logged-in client until it leaves. It runs on a fresh
// goroutine so that the deep login path's stack is not kept while idle.
func (p *Pooler) session(c *client) {
	p.addClient(c)
	p.runSession(c)
}

func (p *Pooler) runSession(c *client) {
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
	c.cleanup()
	if c.br != nil {
		putReader(c.br)
		c.br = nil
	}
	if err != nil && !errors.Is(err, errTerminate) && !errors.Is(err, io.EOF) {
		var m msgBuilder
		switch {
		case errors.Is(err, ErrProtocol):
			c.conn.Write(m.errorMsg("FATAL", codeProtocolViolation, err.Error()).b)
		case errors.Is(err, errIdleInTx):
			c.conn.Write(m.errorMsg("FATAL", "25P03", "idle transaction timeout").b)
		}
		p.log.Debug("pooler: client session ended", "client", c.id, "err", err)
	}
	p.unregisterCancel(c)
	p.removeClient(c)
	p.nclients.Add(-1)
	c.conn.Close()
}
