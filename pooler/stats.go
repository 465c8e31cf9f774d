package pooler

import (
	"sync/atomic"
	"time"
)

// The counters behind SHOW STATS, STATS_TOTALS, STATS_AVERAGES and
// TOTALS, kept as PgBouncer keeps them (src/stats.c, src/client.c,
// src/server.c):
//
//   - A query starts at a client's first message while none is running
//     on its server connection (query_count), and a transaction at the
//     first query outside one (xact_count); both end at the
//     ReadyForQuery that leaves nothing in flight, the transaction only
//     when that ReadyForQuery says idle. Their durations add up in
//     query_time and xact_time. The pooler's own requests (settings,
//     re-prepares, the reset query) are not counted.
//   - wait_time adds up the time clients waited for a server connection;
//     server_assignment_count counts the times a client got one.
//   - received is what clients sent, sent what servers answered.
//   - The averages are over the time since the snapshot taken two
//     stats_period ticks ago, per second for counts and bytes, per query
//     or transaction for times, per assignment for wait_time.

// poolStats are the counters of one pool.
type poolStats struct {
	xact, query          atomic.Int64
	recvBytes, sentBytes atomic.Int64 // from servers, from clients
	xactNanos            atomic.Int64
	queryNanos           atomic.Int64
	waitNanos            atomic.Int64
	waits                atomic.Int64
	assigns              atomic.Int64
	clientParse          atomic.Int64
	serverParse          atomic.Int64
	bind                 atomic.Int64
}

func (s *poolStats) recv(n int) { s.recvBytes.Add(int64(n)) }
func (s *poolStats) sent(n int) { s.sentBytes.Add(int64(n)) }

// statVals is a snapshot, in PgBouncer's order of SHOW STATS columns:
// server_assignment_count, xact_count, query_count, received, sent,
// xact_time, query_time, wait_time (microseconds), client_parse_count,
// server_parse_count, bind_count.
type statVals [11]int64

const (
	stAssign = iota
	stXact
	stQuery
	stRecv
	stSent
	stXactTime
	stQueryTime
	stWaitTime
	stClientParse
	stServerParse
	stBind
)

func (s *poolStats) snapshot() statVals {
	return statVals{
		s.assigns.Load(), s.xact.Load(), s.query.Load(),
		s.sentBytes.Load(), s.recvBytes.Load(),
		s.xactNanos.Load() / 1000, s.queryNanos.Load() / 1000, s.waitNanos.Load() / 1000,
		s.clientParse.Load(), s.serverParse.Load(), s.bind.Load(),
	}
}

func (v *statVals) add(o statVals) {
	for i := range v {
		v[i] += o[i]
	}
}

// average is PgBouncer's calc_average of cur against old over d.
func average(cur, old statVals, d time.Duration) statVals {
	var a statVals
	us := d.Microseconds()
	if us <= 0 {
		return a
	}
	perSec := func(i int) int64 { return (cur[i] - old[i]) * 1e6 / us }
	for _, i := range []int{stAssign, stXact, stQuery, stRecv, stSent, stClientParse, stServerParse, stBind} {
		a[i] = perSec(i)
	}
	if n := cur[stQuery] - old[stQuery]; n > 0 {
		a[stQueryTime] = (cur[stQueryTime] - old[stQueryTime]) / n
	}
	if n := cur[stXact] - old[stXact]; n > 0 {
		a[stXactTime] = (cur[stXactTime] - old[stXactTime]) / n
	}
	if n := cur[stAssign] - old[stAssign]; n > 0 {
		a[stWaitTime] = (cur[stWaitTime] - old[stWaitTime]) / n
	}
	return a
}

// statsWindow keeps the pools' snapshots of the last two stats_period
// ticks (maintain's goroutine writes them, SHOW reads them; p.mu).
type statsWindow struct {
	oldStamp, newStamp time.Time
	older, newer       map[*pool]statVals
}

// refreshStats takes a stats_period snapshot.
func (p *Pooler) refreshStats(now time.Time) {
	pools := p.poolList()
	snap := make(map[*pool]statVals, len(pools))
	for _, pl := range pools {
		snap[pl] = pl.stats.snapshot()
	}
	p.mu.Lock()
	w := &p.statsWin
	w.oldStamp, w.newStamp = w.newStamp, now
	w.older, w.newer = w.newer, snap
	p.mu.Unlock()
}

// statsOf returns a pool's current counters, the snapshot its averages
// start from and the time since then.
func (p *Pooler) statsOf(pl *pool, now time.Time) (cur, old statVals, d time.Duration) {
	cur = pl.stats.snapshot()
	p.mu.Lock()
	defer p.mu.Unlock()
	old = p.statsWin.older[pl] // zero for a pool newer than the snapshot
	since := p.statsWin.oldStamp
	if since.IsZero() {
		since = p.started
	}
	return cur, old, now.Sub(since)
}

// epoch is the origin of mono.
var epoch = time.Now()

// mono is a monotonic clock in nanoseconds, for the hot path's timings.
func mono() int64 { return int64(time.Since(epoch)) }

// queryBegin counts a client's request that starts a query (and maybe a
// transaction) on s; c.mu held.
func (s *server) queryBegin() {
	if s.qStart != 0 {
		return
	}
	now := mono()
	s.qStart = now
	st := &s.pool.stats
	st.query.Add(1)
	if s.xStart == 0 {
		s.xStart = now
		st.xact.Add(1)
	}
}

// queryEnd closes the query (and the transaction when status is 'I') at
// a ReadyForQuery that leaves nothing in flight; c.mu held.
func (s *server) queryEnd(status byte) {
	if s.qStart == 0 {
		return
	}
	now := mono()
	st := &s.pool.stats
	st.queryNanos.Add(now - s.qStart)
	s.qStart = 0
	if status == 'I' && s.xStart != 0 {
		st.xactNanos.Add(now - s.xStart)
		s.xStart = 0
	}
}
