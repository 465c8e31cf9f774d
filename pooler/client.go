package pooler

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type poolMode int

const (
	modeSession poolMode = iota
	modeTransaction
	modeStatement
)

func (m poolMode) String() string {
	return [...]string{"session", "transaction", "statement"}[m]
}

func parseMode(s string) poolMode {
	switch s {
	case "session":
		return modeSession
	case "statement":
		return modeStatement
	}
	return modeTransaction
}

// Client states for SHOW CLIENTS.
const (
	cliIdle int32 = iota
	cliActive
	cliWaiting
)

// inlineSize is how much of a new batch the client reads before taking a
// pooled buffer: enough for a typical small query in one read.
const inlineSize = 96

// respawnAfter is how long a client is idle before its session moves to a
// fresh goroutine (see nextMessage).
const respawnAfter = time.Second

// errRespawn asks the session to continue on a new goroutine.
var errRespawn = errors.New("pooler: continue session on a fresh goroutine")

// errIdleInTx ends a client idle in a transaction past idle_transaction_timeout.
var errIdleInTx = errors.New("pooler: idle transaction timeout")

// errTerminate ends a client session after its Terminate message.
var errTerminate = errors.New("pooler: client terminated")

// client is one application connection. Its goroutine runs serve; while a
// server is attached the server's pump writes to conn.
type client struct {
	p      *Pooler
	id     uint64
	conn   net.Conn
	inline [inlineSize]byte
	pre    prefixReader
	br     *bufio.Reader // pooled; nil while idle
	mode   poolMode
	track  bool // rename protocol-level prepared statements
	pool   *pool
	user   string
	db     string
	pid    uint32
	secret uint32
	stats  *poolStats
	since  time.Time
	state  atomic.Int32
	// Statements the client prepared, by its own name.
	stmts map[string]*stmtDef
	// batch is the server this goroutine holds while writing a batch.
	batch *server
	wake  chan struct{}
	timer *time.Timer
	// deep is set after a batch: the next long idle wait respawns.
	deep bool

	mu      sync.Mutex
	srv     *server
	leaving bool
	tracked [nTracked]string
}

// serve runs the message loop after a successful login.
func (c *client) serve() error {
	for {
		t, n, err := c.nextMessage()
		if err != nil {
			return err
		}
		if err := c.handle(t, n); err != nil {
			return err
		}
		if !c.pending() && c.batch != nil {
			if err := c.endBatch(); err != nil {
				return err
			}
		}
	}
}

// nextMessage reads the next message header, checking its length against
// max_packet_size before anything is buffered. While nothing is pending
// the client holds no buffer: the first read of a batch goes into the
// client's small inline array, and a pooled reader is taken only then.
func (c *client) nextMessage() (byte, int, error) {
	maxLen := int(c.p.cfg.MaxPacketSize)
	if c.pending() {
		hdr, err := c.br.Peek(5)
		if err != nil {
			return 0, 0, err
		}
		t := hdr[0]
		n, err := bodyLen(hdr, maxLen)
		if err != nil {
			return 0, 0, err
		}
		c.br.Discard(5)
		return t, n, nil
	}
	if c.br != nil {
		putReader(c.br)
		c.br = nil
	}
	c.state.Store(cliIdle)
	idleTimeout := c.p.cfg.ClientIdleTimeout.D()
	inTx := false
	if it := c.p.cfg.IdleTransactionTimeout.D(); it > 0 {
		c.mu.Lock()
		if s := c.srv; s != nil && s.queued() == 0 && s.status != 'I' {
			inTx = true
			idleTimeout = it
		}
		c.mu.Unlock()
	}
	deep := c.deep
	if deep || idleTimeout > 0 {
		d := idleTimeout
		if deep && (d == 0 || d > respawnAfter) {
			d = respawnAfter
		}
		c.conn.SetReadDeadline(time.Now().Add(d))
	}
	k, err := io.ReadAtLeast(c.conn, c.inline[:], 5)
	if err != nil {
		var ne net.Error
		if deep && k == 0 && errors.As(err, &ne) && ne.Timeout() {
			// Idle for a while after work that may have grown this
			// goroutine's stack: continue on a fresh, small one.
			c.deep = false
			if idleTimeout > 0 && !inTx {
				c.conn.SetReadDeadline(time.Now().Add(idleTimeout - respawnAfter))
			} else {
				c.conn.SetReadDeadline(time.Time{})
			}
			return 0, 0, errRespawn
		}
		if inTx && errors.As(err, &ne) && ne.Timeout() {
			return 0, 0, errIdleInTx
		}
		return 0, 0, err
	}
	if deep || idleTimeout > 0 {
		c.conn.SetReadDeadline(time.Time{})
	}
	c.deep = true
	t := c.inline[0]
	n, err := bodyLen(c.inline[:5], maxLen)
	if err != nil {
		return 0, 0, err
	}
	c.pre.rest = c.inline[5:k]
	c.pre.conn = c.conn
	c.br = getReader(&c.pre)
	c.state.Store(cliActive)
	return t, n, nil
}

// pending reports whether bytes of the client's batch are already read.
func (c *client) pending() bool {
	return (c.br != nil && c.br.Buffered() > 0) || len(c.pre.rest) > 0
}

// prefixReader serves bytes already read into the inline array, then the
// connection.
type prefixReader struct {
	rest []byte
	conn io.Reader
}

func (r *prefixReader) Read(p []byte) (int, error) {
	if len(r.rest) > 0 {
		n := copy(p, r.rest)
		r.rest = r.rest[n:]
		return n, nil
	}
	return r.conn.Read(p)
}

// endBatch flushes what this goroutine wrote to the server and lets the
// pump release it.
func (c *client) endBatch() error {
	s := c.batch
	c.batch = nil
	err := s.bw.Flush()
	c.mu.Lock()
	s.hold = false
	if s.waiting {
		s.waiting = false
		s.holdCh <- struct{}{}
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("pooler: write to server: %w", err)
	}
	return nil
}

// attached returns the server this batch writes to, or nil.
func (c *client) attached() *server {
	if c.batch != nil {
		return c.batch
	}
	c.mu.Lock()
	s := c.srv
	if s != nil {
		s.hold = true
		c.batch = s
	}
	c.mu.Unlock()
	return s
}

// server returns the attached server, attaching one from the pool first.
func (c *client) server() (*server, error) {
	if s := c.attached(); s != nil {
		return s, nil
	}
	c.state.Store(cliWaiting)
	s, err := c.pool.acquire(c)
	if err != nil {
		return nil, err
	}
	c.state.Store(cliActive)
	s.state.Store(srvActive)
	s.cw.Reset(c.conn)
	s.client.Store(c)
	c.mu.Lock()
	c.srv = s
	s.hold = true
	c.batch = s
	set := c.paramSQL(s)
	if set != "" {
		s.push(pend{kind: 'Q', act: actSwallow})
	}
	c.mu.Unlock()
	if set != "" {
		var m msgBuilder
		s.bw.Write(m.begin('Q').str(set).end().b)
	}
	s.attach <- c
	return s, nil
}

// paramSQL returns SET statements that give s the client's settings; c.mu held.
func (c *client) paramSQL(s *server) string {
	var b strings.Builder
	for i, v := range c.tracked {
		if v == "" || v == s.tracked[i] {
			continue
		}
		b.WriteString("SET ")
		b.WriteString(trackedNames[i])
		b.WriteString(" = '")
		b.WriteString(strings.ReplaceAll(v, "'", "''"))
		b.WriteString("';")
	}
	return b.String()
}

// forward sends the message (header already read) unchanged.
func (c *client) forward(s *server, t byte, n int, kind byte) error {
	if kind != 0 {
		c.mu.Lock()
		s.push(pend{kind: kind})
		c.mu.Unlock()
	}
	writeHeader(s.bw, t, n)
	c.stats.sent(n + 5)
	return copyBody(s.bw, c.br, n)
}

// writeLocal answers the client directly; only while no server is attached.
func (c *client) writeLocal(b []byte) error {
	_, err := c.conn.Write(b)
	return err
}

// handle processes one client message whose 5-byte header has been read.
func (c *client) handle(t byte, n int) error {
	switch t {
	case 'Q', 'E', 'F':
		s, err := c.server()
		if err != nil {
			return c.failWait(err, n)
		}
		kind := t
		if t == 'Q' {
			c.stats.query.Add(1)
		}
		return c.forward(s, t, n, kind)
	case 'S':
		s := c.attached()
		if s == nil && c.mode != modeSession {
			c.br.Discard(n)
			return c.writeLocal([]byte{'Z', 0, 0, 0, 5, 'I'})
		}
		if s == nil {
			var err error
			if s, err = c.server(); err != nil {
				return c.failWait(err, n)
			}
		}
		return c.forward(s, t, n, 'S')
	case 'P':
		return c.handleParse(n)
	case 'B', 'D':
		return c.handleBindDescribe(t, n)
	case 'C':
		return c.handleClose(n)
	case 'H', 'd', 'c', 'f':
		s := c.attached()
		if s == nil {
			_, err := c.br.Discard(n)
			return err
		}
		return c.forward(s, t, n, 0)
	case 'X':
		return errTerminate
	default:
		return fmt.Errorf("%w: unexpected client message type %q", ErrProtocol, t)
	}
}

// failWait reports a failure to get a server and ends the session, as
// PgBouncer does for query_wait_timeout.
func (c *client) failWait(err error, n int) error {
	var m msgBuilder
	var se *serverError
	if errors.As(err, &se) {
		m.errorMsg(se.Severity, se.Code, se.Message)
	} else {
		m.errorMsg("FATAL", codeConnFailure, err.Error())
	}
	c.writeLocal(m.b)
	return err
}

// cleanup runs when the client goroutine ends: give back or drop the
// server, free the slot.
func (c *client) cleanup() {
	if c.batch != nil {
		c.batch.bw.Flush()
	}
	c.mu.Lock()
	c.leaving = true
	s := c.srv
	if c.batch != nil {
		c.batch.hold = false
		c.batch = nil
	}
	if s != nil && s.waiting {
		s.waiting = false
		s.holdCh <- struct{}{}
	}
	if s == nil {
		c.mu.Unlock()
		return
	}
	if c.mode == modeSession && s.queued() == 0 && s.status == 'I' {
		// Reset the session; the pump returns the server after the answer.
		s.push(pend{kind: 'Q', act: actSwallow})
		c.mu.Unlock()
		var m msgBuilder
		s.bw.Write(m.begin('Q').str(c.p.cfg.ServerResetQuery).end().b)
		if err := s.bw.Flush(); err != nil {
			s.close()
		}
		return
	}
	c.srv = nil
	c.mu.Unlock()
	s.close()
}
