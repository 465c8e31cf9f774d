package pooler

import (
	"encoding/binary"
	"net"
	"time"
)

func (p *Pooler) registerCancel(c *client) (uint32, uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		pid, sec := randUint32()&0x7fffffff, randUint32()
		k := uint64(pid)<<32 | uint64(sec)
		if pid != 0 && p.cancels[k] == nil {
			p.cancels[k] = c
			return pid, sec
		}
	}
}

func (p *Pooler) unregisterCancel(c *client) {
	p.mu.Lock()
	delete(p.cancels, uint64(c.pid)<<32|uint64(c.secret))
	p.mu.Unlock()
}

// cancel forwards a CancelRequest to the server running that client's
// query. A client's key reaches a server connection only while the client
// holds it: a cancel for a client with no server is dropped, and a server
// released while a cancel for its client is on the way is kept out of the
// pool until Postgres has taken the cancel (see pool.release), so that it
// cannot stop the next client's query. Postgres ignores a cancel that
// reaches an idle backend.
func (p *Pooler) cancel(pid, sec uint32) {
	p.mu.Lock()
	c := p.cancels[uint64(pid)<<32|uint64(sec)]
	p.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	s := c.srv
	if s != nil {
		s.pool.cancelBegin(s)
	}
	c.mu.Unlock()
	if s == nil {
		return
	}
	defer s.pool.cancelEnd(s)
	if h := p.hooks.cancel; h != nil {
		h()
	}
	s.sendCancel()
}

// cancelBegin marks a cancel request for s's current client as on its way;
// c.mu of that client held.
func (pl *pool) cancelBegin(s *server) {
	pl.mu.Lock()
	s.cancels++
	pl.mu.Unlock()
}

// cancelEnd marks it arrived: a server parked by release while it was on
// its way goes back to the pool.
func (pl *pool) cancelEnd(s *server) {
	pl.mu.Lock()
	s.cancels--
	back := s.cancels == 0 && s.parked
	if back {
		s.parked = false
	}
	pl.mu.Unlock()
	if back {
		pl.release(s, true)
	}
}

// sendCancel asks Postgres to cancel what this server connection runs.
func (s *server) sendCancel() {
	conn, err := net.DialTimeout(serverNetwork(s.addr), s.addr, 5*time.Second)
	if err != nil {
		return
	}
	defer conn.Close()
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:], 16)
	binary.BigEndian.PutUint32(b[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(b[8:], s.pid)
	binary.BigEndian.PutUint32(b[12:], s.secret)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(b[:])
	var one [1]byte
	conn.Read(one[:]) // Postgres closes after handling it
}

// parkedCount is how many of the pool's servers wait for a cancel request
// to arrive before they can be reused (SHOW POOLS sv_being_canceled).
func (pl *pool) parkedCount() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	n := 0
	for s := range pl.all {
		if s.parked {
			n++
		}
	}
	return n
}
