package pooler

import (
	"fmt"
	"strconv"
	"sync"
)

// stmtDef is one distinct prepared statement (query text and parameter
// types), shared by every client that prepares it; on a server it is
// known as name.
type stmtDef struct {
	id   uint64
	name []byte // pooler-owned: "pgha_<id>"
	body []byte // Parse body after the statement name
}

// Bounds on the statements the pooler keeps. A client's named statements
// live as long as the client (it may use them at any time), so they are
// bounded per client: in number by max_client_prepared_statements, in
// text by maxClientStmtBytes. The registry that shares equal statements
// between clients forgets arbitrary ones past its bounds: a client that
// holds a forgotten statement keeps it, and the next Parse of the same
// text is prepared anew under a new name.
const (
	maxClientStmtBytes = 64 << 20
	maxRegistryStmts   = 10000
	maxRegistryBytes   = 64 << 20
)

// stmtRegistry interns statements by their Parse body.
type stmtRegistry struct {
	mu    sync.Mutex
	byQ   map[string]*stmtDef
	bytes int
	next  uint64
}

func (r *stmtRegistry) intern(body []byte) *stmtDef {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.byQ[string(body)]; ok {
		return d
	}
	if r.byQ == nil {
		r.byQ = make(map[string]*stmtDef)
	}
	for len(r.byQ) > 0 && (len(r.byQ) >= maxRegistryStmts || r.bytes+len(body) > maxRegistryBytes) {
		for k, d := range r.byQ { // an arbitrary one
			delete(r.byQ, k)
			r.bytes -= len(d.body)
			break
		}
	}
	r.next++
	d := &stmtDef{id: r.next, name: []byte("pgha_" + strconv.FormatUint(r.next, 10)), body: append([]byte(nil), body...)}
	r.byQ[string(d.body)] = d
	r.bytes += len(d.body)
	return d
}

// stmtLimit is the error that ends a client past its statement bounds.
func stmtLimit(format string, args ...any) error {
	return &loginError{code: codeConfigLimit, msg: fmt.Sprintf(format, args...)}
}

// ensurePrepared makes d exist on s: if missing it queues a Parse whose
// answer is swallowed, evicting the least recently used statement past
// max_prepared_statements. c.mu held; the caller writes what is returned
// in order: evictions then the Parse.
func (c *client) ensurePrepared(s *server, d *stmtDef, forClient bool) (evict []uint64, parse bool, ok bool) {
	s.tick++
	if _, have := s.prepared[d.id]; have {
		s.prepared[d.id] = s.tick
		return nil, false, true
	}
	max := c.p.cfg.MaxPreparedStatements
	for len(s.prepared) >= max && max > 0 {
		var oldID, oldTick uint64
		for id, t := range s.prepared {
			if oldID == 0 || t < oldTick {
				oldID, oldTick = id, t
			}
		}
		delete(s.prepared, oldID)
		if s.push(pend{kind: 'C', act: actSwallow}) {
			evict = append(evict, oldID)
		}
	}
	act := actSwallow
	if forClient {
		act = actForward
	}
	if !s.push(pend{kind: 'P', act: act, id: d.id}) {
		return evict, false, false
	}
	s.prepared[d.id] = s.tick
	s.nprep.Store(int32(len(s.prepared)))
	return evict, true, true
}

func (c *client) writeEvictions(s *server, ids []uint64) {
	for _, id := range ids {
		name := "pgha_" + strconv.FormatUint(id, 10)
		writeHeader(s.bw, 'C', 1+len(name)+1)
		s.bw.WriteByte('S')
		s.bw.WriteString(name)
		s.bw.WriteByte(0)
	}
}

func writeParse(s *server, d *stmtDef) {
	s.pool.stats.serverParse.Add(1)
	writeHeader(s.bw, 'P', len(d.name)+1+len(d.body))
	s.bw.Write(d.name)
	s.bw.WriteByte(0)
	s.bw.Write(d.body)
}

// handleParse: unnamed statements (and everything in session mode) go
// through unchanged; named ones are interned and prepared on the server
// under the pooler's name, or answered locally when already there.
func (c *client) handleParse(n int) error {
	if !c.track {
		s, err := c.server()
		if err != nil {
			return c.failWait(err, n)
		}
		return c.forward(s, 'P', n, 'P')
	}
	if n > c.br.Size() {
		// Too big to peek: only unnamed statements are that large in
		// practice; keep it simple and forward as is if unnamed.
		hdr, err := c.br.Peek(1)
		if err != nil {
			return err
		}
		if hdr[0] == 0 {
			s, err := c.server()
			if err != nil {
				return c.failWait(err, n)
			}
			return c.forward(s, 'P', n, 'P')
		}
		if c.stmtBytes+n > maxClientStmtBytes {
			// Refused before the body is read into memory.
			return stmtLimit("prepared statement of %d bytes: this client's named statements would exceed %d MiB of text; use an unnamed statement or session mode", n, maxClientStmtBytes>>20)
		}
	}
	body, err := readBody(c.br, n)
	if err != nil {
		return err
	}
	name, rest, ok := cbytes(body)
	if !ok {
		return errBadMessage('P')
	}
	var old *stmtDef
	if len(name) > 0 {
		old = c.stmts[string(name)]
		if max := c.p.cfg.MaxClientPreparedStatements; old == nil && max > 0 && len(c.stmts) >= max {
			return stmtLimit("too many prepared statements: this client holds %d named statements (pooler.max_client_prepared_statements); close some, or use unnamed statements", len(c.stmts))
		}
		if old != nil {
			c.stmtBytes -= len(old.body)
		}
		if c.stmtBytes+len(rest) > maxClientStmtBytes {
			return stmtLimit("prepared statements of this client exceed %d MiB of text; close some, or use unnamed statements or session mode", maxClientStmtBytes>>20)
		}
	}
	s, err := c.server()
	if err != nil {
		return c.failWait(err, 0)
	}
	c.sent(n + 5)
	if len(name) == 0 {
		c.mu.Lock()
		s.push(pend{kind: 'P'})
		c.mu.Unlock()
		writeHeader(s.bw, 'P', n)
		s.bw.Write(body)
		return nil
	}
	c.pool.stats.clientParse.Add(1)
	d := c.p.stmts.intern(rest)
	if old != d {
		if c.stmts == nil {
			c.stmts = make(map[string]*stmtDef)
		}
		c.stmts[string(name)] = d
	}
	c.stmtBytes += len(d.body)
	c.mu.Lock()
	evict, parse, _ := c.ensurePrepared(s, d, true)
	if !parse {
		s.push(pend{act: actSynth, msg: '1'})
	}
	c.mu.Unlock()
	c.writeEvictions(s, evict)
	if parse {
		writeParse(s, d)
	}
	return nil
}

// handleBindDescribe renames the statement in Bind and Describe('S').
func (c *client) handleBindDescribe(t byte, n int) error {
	s, err := c.server()
	if err != nil {
		return c.failWait(err, n)
	}
	if !c.track {
		return c.forward(s, t, n, t)
	}
	peek := n
	if peek > c.br.Size() {
		peek = c.br.Size()
	}
	b, err := c.br.Peek(peek)
	if err != nil {
		return err
	}
	var prefix, stmt []byte
	if t == 'B' {
		portal, rest, ok := cbytes(b)
		if !ok {
			return errBadMessage(t)
		}
		if stmt, _, ok = cbytes(rest); !ok {
			return errBadMessage(t)
		}
		prefix = portal
	} else {
		if len(b) < 2 {
			return errBadMessage(t)
		}
		if b[0] != 'S' {
			return c.forward(s, t, n, t)
		}
		var ok bool
		if stmt, _, ok = cbytes(b[1:]); !ok {
			return errBadMessage(t)
		}
	}
	d := c.stmts[string(stmt)]
	if len(stmt) == 0 || d == nil {
		return c.forward(s, t, n, t)
	}
	if t == 'B' {
		c.pool.stats.bind.Add(1)
	}
	c.mu.Lock()
	evict, parse, _ := c.ensurePrepared(s, d, false)
	s.push(pend{kind: t})
	c.mu.Unlock()
	c.writeEvictions(s, evict)
	if parse {
		writeParse(s, d)
	}
	// Rewrite the head of the message; forward the rest untouched.
	var skip int
	if t == 'B' {
		skip = len(prefix) + 1 + len(stmt) + 1
		writeHeader(s.bw, 'B', n-len(stmt)+len(d.name))
		s.bw.Write(prefix)
		s.bw.WriteByte(0)
	} else {
		skip = 1 + len(stmt) + 1
		writeHeader(s.bw, 'D', n-len(stmt)+len(d.name))
		s.bw.WriteByte('S')
	}
	s.bw.Write(d.name)
	s.bw.WriteByte(0)
	c.br.Discard(skip)
	c.sent(n + 5)
	return copyBody(s.bw, c.br, n-skip)
}

// handleClose answers Close of a named statement locally (the server keeps
// it for other clients); portals go to the server.
func (c *client) handleClose(n int) error {
	if c.track && n >= 2 && n <= c.br.Size() {
		b, err := c.br.Peek(n)
		if err != nil {
			return err
		}
		if b[0] == 'S' && b[1] != 0 {
			name, _, ok := cbytes(b[1:])
			if !ok {
				return errBadMessage('C')
			}
			if d := c.stmts[string(name)]; d != nil {
				c.stmtBytes -= len(d.body)
				delete(c.stmts, string(name))
			}
			c.br.Discard(n)
			return c.localAnswer('3')
		}
	}
	s := c.attached()
	if s == nil && c.mode != modeSession {
		// Portals do not outlive a transaction: nothing to close.
		c.br.Discard(n)
		return c.localAnswer('3')
	}
	s, err := c.server()
	if err != nil {
		return c.failWait(err, n)
	}
	return c.forward(s, 'C', n, 'C')
}

// localAnswer queues msg ('1' or '3') in order with the server's answers,
// or writes it at once when no server is attached.
func (c *client) localAnswer(msg byte) error {
	if s := c.attached(); s != nil {
		c.mu.Lock()
		s.push(pend{act: actSynth, msg: msg})
		c.mu.Unlock()
		return nil
	}
	return c.writeLocal([]byte{msg, 0, 0, 0, 4})
}

func errBadMessage(t byte) error {
	return &protoError{t: t}
}

type protoError struct{ t byte }

func (e *protoError) Error() string {
	return "pooler: malformed client message " + strconv.QuoteRune(rune(e.t))
}
func (e *protoError) Unwrap() error { return ErrProtocol }
