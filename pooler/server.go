package pooler

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// maxServerMsg bounds a message from Postgres on the cold paths (login,
// internal queries); the hot path streams bodies of any size.
const maxServerMsg = 1 << 30

// errInRecovery is returned when a node named as primary reports
// in_hot_standby=on.
var errInRecovery = errors.New("pooler: server is in recovery (in_hot_standby=on) but was routed as primary")

// Queue actions for the answers the pump expects from the server.
const (
	actForward byte = iota // pass the answer to the client
	actSwallow             // the pooler sent the request; drop its answer
	actSynth               // answered by the pooler: emit msg at this point
)

// pend is one request sent to the server (or answered locally) whose answer
// the pump has not finished yet.
type pend struct {
	kind byte // P B C D E S Q F, or 0 for a local answer
	act  byte
	msg  byte   // message to emit for actSynth: '1' ParseComplete, '3' CloseComplete
	id   uint64 // prepared statement id of a pooler-sent Parse
}

// server is one connection to Postgres.
type server struct {
	id     uint64
	pool   *pool
	conn   net.Conn
	addr   string
	br     *bufio.Reader // from the server, owned by the pump while attached
	bw     *bufio.Writer // to the server, owned by the attached client goroutine
	cw     *bufio.Writer // to the attached client, owned by the pump
	pid    uint32
	secret uint32

	params      map[string]string // every ParameterStatus seen at login
	tracked     [nTracked]string  // current values of the tracked settings
	prepared    map[uint64]uint64 // statement id -> last use tick
	nprep       atomic.Int32      // len(prepared), for SHOW SERVERS
	tick        uint64
	createdAt   time.Time
	lastUsed    time.Time
	lastChecked time.Time

	// Guarded by the attached client's mu. qStart and xStart are when
	// the running query and transaction began (mono; see stats.go).
	qStart, xStart int64
	q              []pend
	qh             int
	skip           bool // after an extended-protocol error, until Sync
	special        atomic.Int32
	hold           bool // client goroutine is writing a batch
	waiting        bool // pump waits for hold to end
	holdCh         chan struct{}
	status         byte

	client atomic.Pointer[client]
	// raw and peekFn check an idle connection without a goroutine or a
	// deadline (see alive); peekDead is peekFn's result.
	raw      syscall.RawConn
	peekFn   func(fd uintptr) bool
	peekDead bool
	attach   chan *client
	done     chan struct{}
	closed   atomic.Bool
	// closeNeeded: close instead of reusing at the next release.
	closeNeeded atomic.Bool
	// cancels counts cancel requests on their way to this connection's
	// backend; parked: released meanwhile, out of the pool until they
	// arrive (pool.mu; see Pooler.cancel).
	cancels int
	parked  bool
	// Stats for SHOW SERVERS.
	state atomic.Int32
}

const (
	srvIdle int32 = iota
	srvActive
	srvUsed
	srvTested
	srvLogin
)

// serverNetwork is "unix" for a target that is a socket path (a Router
// names the local Postgres that way, see pooler.local_unix_socket), else "tcp".
func serverNetwork(addr string) string {
	if strings.HasPrefix(addr, "/") {
		return "unix"
	}
	return "tcp"
}

// dialServer connects and logs in to addr as user on db.
func (p *Pooler) dialServer(ctx context.Context, pl *pool, addr string) (*server, error) {
	timeout := p.cfg.ServerConnectTimeout.D()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, serverNetwork(addr), addr)
	if err != nil {
		return nil, fmt.Errorf("pooler: connect to %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	var raw syscall.RawConn
	if sc, ok := conn.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	conn = fastConn(conn)
	s := &server{
		raw: raw,
		id:  p.nextID.Add(1), pool: pl, conn: conn, addr: addr,
		br:       bufio.NewReaderSize(conn, 16384),
		bw:       bufio.NewWriterSize(conn, ioBufSize),
		cw:       bufio.NewWriterSize(nil, ioBufSize),
		params:   make(map[string]string),
		prepared: make(map[uint64]uint64),
		holdCh:   make(chan struct{}, 1),
		attach:   make(chan *client, 1),
		done:     make(chan struct{}),
		status:   'I',
	}
	s.state.Store(srvLogin)
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := s.login(pl.key.user, pl.conf.dbname, pl.secret(), pl.conf.startup); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	if !pl.key.readOnly && s.params["in_hot_standby"] == "on" {
		conn.Close()
		return nil, fmt.Errorf("%w: %s", errInRecovery, addr)
	}
	if q := pl.conf.connectQuery; q != "" {
		// PgBouncer's connect_query: errors are logged, not fatal.
		if _, err := s.simpleQuery(q, timeout); err != nil {
			var se *serverError
			if !errors.As(err, &se) {
				conn.Close()
				return nil, fmt.Errorf("pooler: connect_query on %s: %w", addr, err)
			}
			p.log.Warn("pooler: connect_query failed", "db", pl.key.db, "user", pl.key.user, "err", err)
		}
	}
	s.peekFn = s.peek
	now := time.Now()
	s.createdAt, s.lastUsed, s.lastChecked = now, now, now
	s.state.Store(srvIdle)
	return s, nil
}

// readMsg reads one whole message on a cold path.
func (s *server) readMsg() (byte, []byte, error) {
	hdr, err := s.br.Peek(5)
	if err != nil {
		return 0, nil, err
	}
	t := hdr[0]
	n, err := bodyLen(hdr, maxServerMsg)
	if err != nil {
		return 0, nil, err
	}
	s.br.Discard(5)
	b, err := readBody(s.br, n)
	return t, b, err
}

func (s *server) send(m *msgBuilder) error {
	if _, err := s.bw.Write(m.b); err != nil {
		return err
	}
	return s.bw.Flush()
}

// login runs the startup and authentication exchange; extra are more
// startup parameters, name and value in turn.
func (s *server) login(user, db string, sec secret, extra []string) error {
	var m msgBuilder
	m.b = append(m.b, 0) // placeholder type byte for beginUntyped
	m.beginUntyped().i32(protocolV3).str("user").str(user).str("database").str(db)
	for _, x := range extra {
		m.str(x)
	}
	m.byte1(0)
	binary.BigEndian.PutUint32(m.b[1:], uint32(len(m.b)-1))
	if _, err := s.bw.Write(m.b[1:]); err != nil {
		return fmt.Errorf("pooler: login to %s: %w", s.addr, err)
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("pooler: login to %s: %w", s.addr, err)
	}
	var sc *scramClient
	for {
		t, b, err := s.readMsg()
		if err != nil {
			return fmt.Errorf("pooler: login to %s: %w", s.addr, err)
		}
		switch t {
		case 'R':
			if len(b) < 4 {
				return fmt.Errorf("%w: short authentication request from %s", ErrProtocol, s.addr)
			}
			if err := s.authStep(binary.BigEndian.Uint32(b), b[4:], user, sec, &sc); err != nil {
				return err
			}
		case 'S':
			s.noteParameter(b)
		case 'K':
			if len(b) >= 8 {
				s.pid, s.secret = binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
			}
		case 'Z':
			return nil
		case 'E':
			return parseErrorFields(b)
		case 'N', 'v':
		default:
			return fmt.Errorf("%w: unexpected message %q during login to %s", ErrProtocol, t, s.addr)
		}
	}
}

func (s *server) authStep(code uint32, data []byte, user string, sec secret, sc **scramClient) error {
	var m msgBuilder
	noCred := func(what string) error {
		return &serverError{Severity: "FATAL", Code: codeInvalidAuthSpec,
			Message: fmt.Sprintf("pooler has no credentials for %s login of user %q to the server (add the password to auth_file, or log in with SCRAM)", what, user)}
	}
	switch code {
	case 0:
		if *sc != nil && !(*sc).verified {
			// AuthenticationOk without SASLFinal: the server skipped
			// proving that it knows the secret.
			return fmt.Errorf("pooler: login to %s: the server ended SCRAM without its signature", s.addr)
		}
		return nil
	case 3: // cleartext
		if sec.plain == "" {
			return noCred("cleartext")
		}
		return s.send(m.begin('p').str(sec.plain).end())
	case 5: // md5
		if len(data) < 4 {
			return fmt.Errorf("%w: short md5 salt", ErrProtocol)
		}
		stored := sec.md5
		if sec.plain != "" {
			stored = md5Password(user, sec.plain)
		}
		if stored == "" {
			return noCred("md5")
		}
		return s.send(m.begin('p').str(md5Response(stored, data[:4])).end())
	case 10: // SASL
		if !strings.Contains(string(data), "SCRAM-SHA-256\x00") {
			return fmt.Errorf("pooler: server %s offers no SCRAM-SHA-256", s.addr)
		}
		c := &scramClient{user: user, password: sec.plain}
		if sec.plain == "" {
			if sec.clientKey == nil {
				return noCred("SCRAM")
			}
			c.clientKey = sec.clientKey
			if sec.scram != nil {
				c.serverKey = sec.scram.serverKey
			}
		}
		*sc = c
		first := c.firstMessage()
		return s.send(m.begin('p').str("SCRAM-SHA-256").i32(int32(len(first))).raw([]byte(first)).end())
	case 11:
		if *sc == nil {
			return fmt.Errorf("%w: SASLContinue before SASL", ErrProtocol)
		}
		final, err := (*sc).finalMessage(string(data))
		if err != nil {
			return fmt.Errorf("pooler: login to %s: %w", s.addr, err)
		}
		return s.send(m.begin('p').raw([]byte(final)).end())
	case 12:
		if *sc == nil {
			return fmt.Errorf("%w: SASLFinal before SASL", ErrProtocol)
		}
		if err := (*sc).verify(string(data)); err != nil {
			return fmt.Errorf("pooler: login to %s: %w", s.addr, err)
		}
		return nil
	default:
		return fmt.Errorf("pooler: server %s asks for authentication method %d, which the pooler does not support", s.addr, code)
	}
}

// simpleQuery runs sql on an idle server (no pump) and returns the rows
// as text; an ErrorResponse becomes a *serverError.
func (s *server) simpleQuery(sql string, timeout time.Duration) ([][]*string, error) {
	s.conn.SetDeadline(time.Now().Add(timeout))
	defer s.conn.SetDeadline(time.Time{})
	var m msgBuilder
	if err := s.send(m.begin('Q').str(sql).end()); err != nil {
		return nil, err
	}
	return s.readRows()
}

// paramQuery runs sql with text parameters bound to $1, $2, ... (the
// extended protocol: the values never become SQL text) on an idle
// server and returns the rows as text.
func (s *server) paramQuery(sql string, args []string, deadline time.Time) ([][]*string, error) {
	s.conn.SetDeadline(deadline)
	defer s.conn.SetDeadline(time.Time{})
	var m msgBuilder
	m.begin('P').str("").str(sql).i16(0).end()
	m.begin('B').str("").str("").i16(0).i16(int16(len(args)))
	for _, a := range args {
		m.i32(int32(len(a))).raw([]byte(a))
	}
	m.i16(0).end()
	m.begin('E').str("").i32(0).end()
	m.begin('S').end()
	if err := s.send(&m); err != nil {
		return nil, err
	}
	return s.readRows()
}

// readRows reads a query's answers up to ReadyForQuery.
func (s *server) readRows() ([][]*string, error) {
	var rows [][]*string
	var qerr error
	for {
		t, b, err := s.readMsg()
		if err != nil {
			return nil, err
		}
		switch t {
		case 'D':
			if len(b) < 2 {
				return nil, fmt.Errorf("%w: short DataRow", ErrProtocol)
			}
			nf := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			row := make([]*string, nf)
			for i := 0; i < nf && len(b) >= 4; i++ {
				l := int(int32(binary.BigEndian.Uint32(b)))
				b = b[4:]
				if l >= 0 && l <= len(b) {
					v := string(b[:l])
					row[i] = &v
					b = b[l:]
				}
			}
			rows = append(rows, row)
		case 'E':
			qerr = parseErrorFields(b)
		case 'S':
			s.noteParameter(b)
		case 'Z':
			if len(b) == 1 {
				s.status = b[0]
			}
			return rows, qerr
		}
	}
}

// close drops the connection; the pool forgets it.
func (s *server) close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.done)
	var m msgBuilder
	s.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	s.conn.Write(m.begin('X').end().b)
	s.conn.Close()
	s.pool.forget(s)
}

func randUint32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// alive reports whether an idle server connection is still usable: nothing
// may be waiting to be read (Postgres sends a FATAL before it closes a
// connection on shutdown or pg_terminate_backend) and the peer has not
// closed. One non-blocking recv(MSG_PEEK), no allocation.
func (s *server) alive() bool {
	if s.br.Buffered() > 0 {
		return false
	}
	if s.raw == nil {
		return true
	}
	s.peekDead = false
	if err := s.raw.Read(s.peekFn); err != nil {
		return false
	}
	return !s.peekDead
}

func (s *server) peek(fd uintptr) bool {
	// A raw call, as in rawConn: it never blocks (MSG_DONTWAIT).
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != syscall.EAGAIN {
		s.peekDead = true // data while idle, EOF or an error
	}
	return true
}

// noteParameter records a ParameterStatus body (name\0value\0) the
// server sent outside the forwarding path (login, internal queries).
func (s *server) noteParameter(b []byte) {
	k, rest, _ := cstring(b)
	v, _, _ := cstring(rest)
	s.params[k] = v
	if i := s.pool.p.trackIndex(k); i >= 0 {
		s.tracked[i] = v
	}
}
