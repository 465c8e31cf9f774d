package pooler

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
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

// errRespawn asks the session to continue on a new goroutine.
var errRespawn = errors.New("pooler: continue session on a fresh goroutine")

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
	// pumping is set once answers from the attached server are being
	// pumped (inline or by its goroutine).
	pumping bool
	deep    atomic.Bool
	reap    atomic.Bool
	state   atomic.Int32
	pool    *pool
	user    string
	db      string
	pid     uint32
	secret  uint32
	stats   *poolStats
	since   time.Time
	// Statements the client prepared, by its own name, and the bytes of
	// their text (bounded, see handleParse).
	stmts     map[string]*stmtDef
	stmtBytes int
	// tls: the client negotiated TLS; pending: it counts against
	// max_pending_logins (login goroutine only).
	tls, loginPending bool
	// batch is the server this goroutine holds while writing a batch;
	// batchBytes counts what it wrote.
	batch      *server
	batchBytes int
	wake       chan struct{}
	// handed is a server a release gave this waiting client; waitStart
	// when it began waiting (mono), for SHOW POOLS and CLIENTS (pool.mu).
	handed    *server
	waitStart int64
	timer     *time.Timer
	// deep is set after a batch; reap asks the idle read to return so
	// the session continues on a fresh goroutine; activeTick is the
	// maintenance tick of the last batch.
	idleStart  time.Time
	activeTick atomic.Int64
	// lastRequest is when the last batch began (Unix seconds, coarse).
	lastRequest atomic.Int64

	// kill is why endBy asked the session to end; bye is set once its
	// farewell is written; pumpMu is held by a pump goroutine while it
	// serves this client (see detach).
	kill   atomic.Pointer[loginError]
	bye    atomic.Bool
	pumpMu sync.Mutex

	mu      sync.Mutex
	srv     *server
	leaving bool
	// tracked is shared by clients with the same settings (see
	// internTracked): never written through, replaced (setTracked).
	tracked *[nTracked]string
}

// noTracked is the settings of a client before login.
var noTracked [nTracked]string

// setTracked changes one of the client's settings; c.mu held. The array
// may be shared, so a change copies it (SET is rare; an unchanged value,
// the common ParameterStatus, costs nothing).
func (c *client) setTracked(i int, v string) {
	if c.tracked[i] == v {
		return
	}
	t := *c.tracked
	t[i] = v
	c.tracked = &t
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
	idleTimeout, idleTx := c.p.cfg.ClientIdleTimeout.D(), c.p.cfg.IdleTransactionTimeout.D()
	if pl := c.pool; pl != nil {
		idleTimeout, idleTx = pl.conf.clientIdle, pl.conf.idleTx
	}
	inTx := false
	if it := idleTx; it > 0 {
		c.mu.Lock()
		if s := c.srv; s != nil && s.queued() == 0 && s.status != 'I' {
			inTx = true
			idleTimeout = it
		}
		c.mu.Unlock()
	}
	var deadline time.Time
	if idleTimeout > 0 {
		// A session moved to a fresh goroutine keeps its idle start.
		if c.idleStart.IsZero() {
			c.idleStart = time.Now()
		}
		deadline = c.idleStart.Add(idleTimeout)
		c.conn.SetReadDeadline(deadline)
	}
	k := 0
	for k < 5 {
		m, err := c.conn.Read(c.inline[k:])
		k += m
		if err == nil {
			continue
		}
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		if timeout && c.kill.Load() != nil {
			return 0, 0, c.killed()
		}
		if timeout && c.reap.Swap(false) {
			// The maintenance loop interrupted a long idle wait after
			// work that may have grown this goroutine's stack: continue
			// the session on a fresh, small one (see reapIdle).
			c.conn.SetReadDeadline(deadline)
			if k == 0 && c.deep.Load() {
				c.deep.Store(false)
				return 0, 0, errRespawn
			}
			continue
		}
		if inTx && timeout {
			return 0, 0, errIdleInTx
		}
		if timeout && idleTimeout > 0 {
			return 0, 0, errClientIdle
		}
		return 0, 0, err
	}
	if idleTimeout > 0 {
		c.conn.SetReadDeadline(time.Time{})
		c.idleStart = time.Time{}
	}
	if !c.deep.Load() {
		c.deep.Store(true)
	}
	c.activeTick.Store(c.p.tick.Load())
	c.lastRequest.Store(c.p.unixNow.Load())
	t := c.inline[0]
	n, err := bodyLen(c.inline[:5], maxLen)
	if err != nil {
		return 0, 0, err
	}
	c.pre.rest = c.inline[5:k]
	c.pre.c = c
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
	c    *client
}

func (r *prefixReader) Read(p []byte) (int, error) {
	if len(r.rest) > 0 {
		n := copy(p, r.rest)
		r.rest = r.rest[n:]
		return n, nil
	}
	for {
		n, err := r.c.conn.Read(p)
		if err != nil && r.c.kill.Load() != nil {
			return n, r.c.killed()
		}
		if err != nil && r.c.reap.Swap(false) {
			// A reap aimed at the idle wait arrived mid-batch: ignore it.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.c.conn.SetReadDeadline(time.Time{})
				if n > 0 {
					return n, nil
				}
				continue
			}
		}
		return n, err
	}
}

// reapIdle interrupts the idle reads of clients that have been idle for
// at least a maintenance tick after doing work, so that their sessions
// move to fresh goroutines with small stacks (an idle client then costs a
// minimal stack). Only plain TCP and Unix connections are interrupted.
// It returns how many it interrupted.
func (p *Pooler) reapIdle(tick int64) int {
	n := 0
	for _, c := range p.clientList() {
		if c.state.Load() != cliIdle || !c.deep.Load() || c.reap.Load() || tick-c.activeTick.Load() < 2 {
			continue
		}
		switch c.conn.(type) {
		case *net.TCPConn, *net.UnixConn, *rawConn:
		default:
			continue
		}
		c.reap.Store(true)
		c.conn.SetReadDeadline(time.Unix(1, 0))
		n++
	}
	return n
}

// reapRelease is how many reaped sessions make releaseStacks return
// memory to the OS: each left a grown stack (4 KB or more) behind.
const reapRelease = 1000

// releaseStacks returns the grown stacks left by reaped sessions to the
// OS once a burst of reaping is over (or every 10 s while it lasts). The
// runtime keeps freed stack memory as heap up to its GC goal, which counts
// every goroutine's stack, so after thousands of clients go idle at once
// that memory would stay resident; FreeOSMemory (one GC and a scavenge,
// milliseconds) gives it back. Steady traffic does not reap and never
// gets here. Called from maintain's goroutine only.
func (p *Pooler) releaseStacks(reaped int) {
	p.reapedSince += reaped
	if p.reapedSince < reapRelease || (reaped > 0 && time.Since(p.lastRelease) < 10*time.Second) {
		return
	}
	p.reapedSince = 0
	p.lastRelease = time.Now()
	debug.FreeOSMemory()
}

// endBatch flushes what this goroutine wrote to the server and lets the
// pump release it. The answers are forwarded by a pump: inline, in this
// goroutine, when the batch ends at a sync point in transaction or
// statement mode (the client now waits for them, so reading its socket
// can wait too); otherwise by the server's pump goroutine.
func (c *client) endBatch() error {
	s := c.batch
	c.batch = nil
	c.batchBytes = 0
	err := s.bw.Flush()
	c.mu.Lock()
	s.hold = false
	if s.waiting {
		s.waiting = false
		s.holdCh <- struct{}{}
	}
	start := !c.pumping && c.srv == s
	inline := start && c.mode != modeSession && s.queued() > 0 && isSyncPoint(s.q[len(s.q)-1].kind)
	c.mu.Unlock()
	if err != nil {
		return serverLost(err)
	}
	if !start {
		return nil
	}
	c.pumping = true
	if !inline {
		c.startPump(s)
		return nil
	}
	c.state.Store(cliActive)
	err = s.pumpLoop(c, true)
	switch {
	case err == nil:
		c.pumping = false // released
		return nil
	case errors.Is(err, errInlineIdle):
		c.pumping = false // still attached; the next batch pumps again
		return nil
	case errors.Is(err, errHandoff):
		c.startPump(s) // COPY FROM STDIN: the client must be read meanwhile
		return nil
	}
	s.pumpFailed(c, err)
	return err
}

func isSyncPoint(kind byte) bool { return kind == 'S' || kind == 'Q' || kind == 'F' }

// startPump hands the answers to the server's pump goroutine once a batch
// grows large: the server may answer before the batch ends.
func (c *client) sent(n int) {
	c.stats.sent(n)
	c.batchBytes += n
	if c.batchBytes > 32<<10 && !c.pumping && c.batch != nil {
		c.pumping = true
		c.startPump(c.batch)
	}
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
	c.pool.stats.assigns.Add(1)
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
	c.pumping = false
	c.batchBytes = 0
	return s, nil
}

// forward sends the message (header already read) unchanged.
func (c *client) forward(s *server, t byte, n int, kind byte) error {
	if kind != 0 {
		c.mu.Lock()
		s.push(pend{kind: kind})
		c.mu.Unlock()
	}
	writeHeader(s.bw, t, n)
	c.sent(n + 5)
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
		return c.forward(s, t, n, t)
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

// failWait ends the session after a failure to get a server, as
// PgBouncer does for query_wait_timeout: the farewell is Postgres's own
// refusal of the login, or the pooler's reason.
func (c *client) failWait(err error, n int) error {
	var se *serverError
	var le *loginError
	switch {
	case errors.As(err, &le):
		return le
	case errors.As(err, &se):
		return &loginError{code: se.Code, msg: se.Message, cause: err.Error()}
	case errors.Is(err, ErrQueryWaitTimeout):
		le := &loginError{code: codeProtocolViolation, msg: "query_wait_timeout", cause: err.Error()}
		var last *lastServerError
		if errors.As(err, &last) {
			// PgBouncer says only query_wait_timeout; the reason no
			// server could be had saves a trip to the log.
			le.msg += " (last server error: " + last.err.Error() + ")"
		}
		return le
	}
	return &loginError{code: codeProtocolViolation, msg: err.Error()}
}

// serverLost is the farewell of a client whose server connection failed
// under it.
func serverLost(err error) error {
	return &loginError{code: errServerLost.code, msg: errServerLost.msg, cause: err.Error()}
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
	if c.mode == modeSession && s.queued() == 0 && s.status == 'I' && !s.skip {
		// Reset the session; the pump returns the server after the
		// answer, which can arrive before Flush returns: hold keeps the
		// pump from giving the server to the next client (who would
		// write to s.bw) until this goroutine is done with it.
		s.push(pend{kind: 'Q', act: actSwallow})
		s.hold = true
		if !c.pumping {
			c.pumping = true
			c.startPump(s)
		}
		c.mu.Unlock()
		var m msgBuilder
		s.bw.Write(m.begin('Q').str(c.p.cfg.ServerResetQuery).end().b)
		err := s.bw.Flush()
		c.mu.Lock()
		s.hold = false
		if s.waiting {
			s.waiting = false
			s.holdCh <- struct{}{}
		}
		c.mu.Unlock()
		if err != nil {
			s.close()
		}
		return
	}
	c.srv = nil
	c.mu.Unlock()
	s.close()
}
