package pooler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// poolKey names a pool: one per (database, user) and port.
type poolKey struct {
	db, user string
	readOnly bool
}

// name is the pool's database as the admin console shows it: the
// read-only port's pools get a "_ro" suffix, so that the rows of SHOW
// POOLS, STATS and DATABASES stay unique per (database, user), as
// pgbouncer_exporter needs.
func (k poolKey) name() string {
	if k.readOnly {
		return k.db + "_ro"
	}
	return k.db
}

// ErrQueryWaitTimeout is the error a client gets when no server connection
// became free within query_wait_timeout.
var ErrQueryWaitTimeout = errors.New("pooler: query_wait_timeout")

// lastServerError is ErrQueryWaitTimeout for a pool whose last attempt to
// open a server connection failed with err.
type lastServerError struct{ err error }

func (e *lastServerError) Error() string {
	return ErrQueryWaitTimeout.Error() + " (last server error: " + e.err.Error() + ")"
}
func (e *lastServerError) Unwrap() error { return ErrQueryWaitTimeout }

// pool holds the server connections of one (database, user).
type pool struct {
	p    *Pooler
	key  poolKey
	conf poolConf
	st   *dbState

	mu       sync.Mutex
	cred     secret
	idle     []*server // LIFO
	all      map[*server]struct{}
	total    int // open plus connecting
	waiters  []*client
	params   map[string]string // first login's ParameterStatus, for greetings
	lastErr  error
	nclients atomic.Int64
	stats    poolStats
	// tracked is the settings of the pool's last client with new ones;
	// clients with the same settings share it (8 bytes each instead of
	// their own array and strings).
	tracked atomic.Pointer[[nTracked]string]
}

// internTracked returns a shared array equal to t, or t, which becomes the
// shared one. Nobody may write to t afterwards (see setTracked).
func (pl *pool) internTracked(t *[nTracked]string) *[nTracked]string {
	if sh := pl.tracked.Load(); sh != nil && *sh == *t {
		return sh
	}
	pl.tracked.Store(t)
	return t
}

func (pl *pool) secret() secret {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.cred
}

// setCred keeps the freshest credentials a client proved (a plain password
// or a SCRAM ClientKey) for server logins.
func (pl *pool) setCred(s secret) {
	pl.mu.Lock()
	if s.plain != "" || pl.cred.plain == "" {
		if s.plain != "" || s.clientKey != nil || s.md5 != "" || pl.cred.clientKey == nil {
			pl.cred = s
		}
	}
	pl.mu.Unlock()
}

func (pl *pool) size() int { return pl.conf.size }

// paused reports whether new transactions of this pool wait (PAUSE,
// PAUSE db, KILL db, a primary change).
func (pl *pool) paused() bool { return pl.p.paused.Load() || pl.st.paused.Load() }

// acquire returns an idle or new server connection for c, waiting (FIFO,
// bounded by query_wait_timeout) when the pool is full or paused.
func (pl *pool) acquire(c *client) (*server, error) {
	wait := pl.p.cfg.QueryWaitTimeout.D()
	var deadline time.Time
	start := time.Now()
	if wait > 0 {
		deadline = start.Add(wait)
	}
	reserveAt := start.Add(pl.p.cfg.ReservePoolTimeout.D())
	waited, evicted := false, false
	defer func() {
		if waited {
			pl.mu.Lock()
			c.waitStart = 0
			pl.mu.Unlock()
			d := time.Since(start)
			pl.stats.waitNanos.Add(int64(d))
			pl.stats.waits.Add(1)
			pl.p.metrics.observeWait(d)
		}
	}()
	for {
		if k := c.kill.Load(); k != nil {
			pl.giveUp(c)
			return nil, k // KILL, KILL_CLIENT, DISABLE or shutdown
		}
		pl.mu.Lock()
		if !pl.paused() {
			for len(pl.idle) > 0 {
				s := pl.idle[len(pl.idle)-1]
				pl.idle = pl.idle[:len(pl.idle)-1]
				pl.mu.Unlock()
				if pl.usable(s) {
					return s, nil
				}
				s.close()
				pl.mu.Lock()
			}
			limit := pl.size()
			if pl.conf.reserve > 0 && waited && time.Now().After(reserveAt) {
				limit += pl.conf.reserve
			}
			if pl.total < limit && pl.slot(1) {
				pl.total++
				pl.mu.Unlock()
				s, err := pl.connect(deadline)
				if err == nil {
					return s, nil
				}
				pl.mu.Lock()
				pl.total--
				pl.slot(-1)
				pl.lastErr = err
				pl.wakeOne()
				pl.mu.Unlock()
				var se *serverError
				if errors.As(err, &se) && !transientLoginError(se.Code) {
					return nil, err // login refused: tell the client at once
				}
				pl.p.log.Warn("pooler: cannot open server connection", "db", pl.key.db, "user", pl.key.user, "err", err)
				if !pl.sleepRetry(deadline) {
					return nil, &lastServerError{err}
				}
				waited = true
				continue
			}
			if pl.total < limit && !evicted {
				// max_db_connections or max_user_connections is
				// reached: as PgBouncer, close an idle server connection
				// of another pool of the database (or user) to make room.
				evicted = true
				pl.mu.Unlock()
				if pl.p.evictFor(pl) {
					continue
				}
				pl.mu.Lock()
			}
		}
		// Wait for a release, a resume or the deadline.
		if c.wake == nil {
			c.wake = make(chan struct{}, 1)
		}
		if c.waitStart == 0 {
			c.waitStart = int64(start.Sub(epoch)) // for SHOW POOLS maxwait
		}
		pl.waiters = append(pl.waiters, c)
		pl.mu.Unlock()
		waited = true
		woken := c.sleep(deadline, reserveAt)
		evicted = false
		pl.mu.Lock()
		if s := c.handed; s != nil {
			// A release handed its server straight to us.
			c.handed = nil
			pl.mu.Unlock()
			if pl.fresh(s) {
				return s, nil
			}
			s.close()
			continue
		}
		if woken {
			pl.mu.Unlock()
			continue
		}
		removed := pl.removeWaiter(c)
		if !removed {
			// We were woken as we timed out: pass the wake-up on.
			pl.wakeOne()
		}
		lastErr := pl.lastErr
		pl.mu.Unlock()
		if deadline.IsZero() || time.Now().Before(deadline) {
			continue // reserve_pool_timeout reached: retry with the reserve
		}
		if lastErr != nil && pl.total == 0 {
			return nil, &lastServerError{lastErr}
		}
		return nil, ErrQueryWaitTimeout
	}
}

// sleep blocks until woken (true) or until the earlier of deadline and
// reserveAt passes (false).
func (c *client) sleep(deadline, reserveAt time.Time) bool {
	until := deadline
	if c.pool.conf.reserve > 0 && time.Now().Before(reserveAt) && (until.IsZero() || reserveAt.Before(until)) {
		until = reserveAt
	}
	if until.IsZero() {
		<-c.wake
		return true
	}
	d := time.Until(until)
	if d <= 0 {
		select {
		case <-c.wake:
			return true
		default:
			return false
		}
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.wake:
		c.timer.Stop()
		return true
	case <-c.timer.C:
		return false
	}
}

// transientLoginError reports SQLSTATEs a login can fail with while a node
// starts, stops or is promoted: the client waits and the pooler retries
// (bounded by query_wait_timeout) instead of passing the error on.
func transientLoginError(code string) bool {
	switch code {
	case "57P03", "57P01", "57P02", "53300", "08006", "08001":
		return true
	}
	return false
}

func (pl *pool) sleepRetry(deadline time.Time) bool {
	changed := pl.p.routeWake()
	d := pl.p.cfg.ServerLoginRetry.D()
	if d > time.Second {
		d = time.Second // retry promptly; the primary may just have moved
	}
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		if d > left {
			d = left
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-changed:
		return true // a new primary: try it now
	case <-pl.p.done:
		return false
	}
}

// giveUp takes a client that stops waiting (endBy) out of the queue,
// passing on a wake-up or a server it was given meanwhile.
func (pl *pool) giveUp(c *client) {
	pl.mu.Lock()
	removed := pl.removeWaiter(c)
	s := c.handed
	c.handed = nil
	if !removed && s == nil && c.wake != nil {
		select {
		case <-c.wake:
			pl.wakeOne() // a wake-up meant for a waiter: pass it on
		default:
		}
	}
	pl.mu.Unlock()
	if s != nil {
		pl.release(s, true)
	}
}

func (pl *pool) removeWaiter(c *client) bool {
	for i, w := range pl.waiters {
		if w == c {
			copy(pl.waiters[i:], pl.waiters[i+1:])
			pl.waiters[len(pl.waiters)-1] = nil
			pl.waiters = pl.waiters[:len(pl.waiters)-1]
			return true
		}
	}
	return false
}

// popWaiter removes the first waiter; pl.mu held.
func (pl *pool) popWaiter() {
	// Reslice rather than shift: O(1) with thousands of waiters (append
	// drops the consumed head when it next grows the array).
	pl.waiters[0] = nil
	pl.waiters = pl.waiters[1:]
	if len(pl.waiters) == 0 {
		pl.waiters = nil
	}
}

// wakeOne signals the first waiter; pl.mu held.
func (pl *pool) wakeOne() {
	if len(pl.waiters) == 0 {
		return
	}
	c := pl.waiters[0]
	pl.popWaiter()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (pl *pool) wakeAll() {
	pl.mu.Lock()
	for len(pl.waiters) > 0 {
		pl.wakeOne()
	}
	pl.mu.Unlock()
}

// usable checks an idle server before reuse: fresh's checks, liveness,
// lifetime, and the check query after server_check_delay.
func (pl *pool) usable(s *server) bool {
	if !pl.fresh(s) || !s.alive() {
		return false
	}
	now := time.Now()
	if lt := pl.conf.lifetime; lt > 0 && now.Sub(s.createdAt) > lt {
		return false
	}
	if now.Sub(s.lastUsed) >= pl.p.cfg.ServerCheckDelay.D() && pl.p.cfg.ServerCheckQuery != "" {
		s.state.Store(srvTested)
		if _, err := s.simpleQuery(pl.p.cfg.ServerCheckQuery, pl.p.cfg.ServerConnectTimeout.D()); err != nil || s.status != 'I' {
			return false
		}
		s.lastChecked = now
	}
	return true
}

func (pl *pool) connect(deadline time.Time) (*server, error) {
	addr, err := pl.p.target(pl.key.readOnly)
	if err != nil {
		return nil, err
	}
	ctx := pl.p.ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	s, err := pl.p.dialServer(ctx, pl, addr)
	if err != nil {
		return nil, err
	}
	pl.p.workers.Add(1)
	go func() {
		defer pl.p.workers.Done()
		s.pumpWorker()
	}()
	pl.mu.Lock()
	if pl.all == nil {
		pl.all = make(map[*server]struct{})
	}
	pl.all[s] = struct{}{}
	if pl.params == nil {
		pl.params = make(map[string]string, len(s.params))
		for k, v := range s.params {
			pl.params[k] = v
		}
	}
	pl.lastErr = nil
	pl.mu.Unlock()
	return s, nil
}

// release returns s after a transaction (clean: status 'I').
func (pl *pool) release(s *server, clean bool) {
	s.lastUsed = time.Now()
	s.state.Store(srvIdle)
	if !clean || s.closed.Load() || s.closeNeeded.Load() || !pl.p.targetOK(pl.key.readOnly, s.addr) {
		s.close()
		return
	}
	if lt := pl.conf.lifetime; lt > 0 && s.lastUsed.Sub(s.createdAt) > lt {
		s.close()
		return
	}
	pl.mu.Lock()
	if _, ok := pl.all[s]; !ok {
		pl.mu.Unlock()
		s.close()
		return
	}
	if s.cancels > 0 {
		// A cancel request of the client that just let s go is still on
		// its way to Postgres: the next client must not get s before it
		// has arrived (cancelEnd releases s again).
		s.parked = true
		pl.mu.Unlock()
		return
	}
	if len(pl.waiters) > 0 && !pl.paused() {
		// Hand the server to the first waiter: it needs no second trip
		// through the idle list, and no liveness peek (it answered just now).
		w := pl.waiters[0]
		pl.popWaiter()
		w.handed = s
		select {
		case w.wake <- struct{}{}:
		default:
		}
		pl.mu.Unlock()
		return
	}
	pl.idle = append(pl.idle, s)
	pl.wakeOne()
	pl.mu.Unlock()
	if pl.conf.maxDB > 0 || pl.conf.maxUser > 0 {
		pl.p.wakeCapped(pl)
	}
}

// fresh checks what may have changed since a server's release (closed,
// RECONNECT, a routing change): all a server handed over by release
// moments ago needs, and the start of usable.
func (pl *pool) fresh(s *server) bool {
	return !s.closed.Load() && !s.closeNeeded.Load() && pl.p.targetOK(pl.key.readOnly, s.addr)
}

// forget removes a closed server and lets a waiter open a new one.
func (pl *pool) forget(s *server) {
	pl.mu.Lock()
	if _, ok := pl.all[s]; ok {
		delete(pl.all, s)
		pl.total--
		pl.slot(-1)
		for i, x := range pl.idle {
			if x == s {
				pl.idle = append(pl.idle[:i], pl.idle[i+1:]...)
				break
			}
		}
		pl.wakeOne()
	}
	pl.mu.Unlock()
	if pl.conf.maxDB > 0 || pl.conf.maxUser > 0 {
		pl.p.wakeCapped(pl)
	}
}

// closeIdle closes idle servers matching drop.
func (pl *pool) closeIdle(drop func(*server) bool) {
	pl.mu.Lock()
	var gone []*server
	keep := pl.idle[:0]
	for _, s := range pl.idle {
		if drop(s) {
			gone = append(gone, s)
		} else {
			keep = append(keep, s)
		}
	}
	for i := len(keep); i < len(pl.idle); i++ {
		pl.idle[i] = nil
	}
	pl.idle = keep
	pl.mu.Unlock()
	for _, s := range gone {
		s.close()
	}
}

// counts returns active, idle and waiting numbers for SHOW and metrics.
func (pl *pool) counts() (active, idle, waiting, total int) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.all) - len(pl.idle), len(pl.idle), len(pl.waiters), pl.total
}

// servers lists the pool's server connections.
func (pl *pool) servers() []*server {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	out := make([]*server, 0, len(pl.all))
	for s := range pl.all {
		out = append(out, s)
	}
	return out
}

// greeting returns the server parameters to announce to a new client,
// connecting once if the pool has never logged in.
func (pl *pool) greeting(c *client) (map[string]string, error) {
	pl.mu.Lock()
	params := pl.params
	pl.mu.Unlock()
	if params != nil {
		return params, nil
	}
	s, err := pl.acquire(c)
	if err != nil {
		return nil, err
	}
	pl.release(s, true)
	pl.mu.Lock()
	params = pl.params
	pl.mu.Unlock()
	if params == nil {
		return nil, fmt.Errorf("pooler: no server parameters for %s/%s", pl.key.db, pl.key.user)
	}
	return params, nil
}

// fillMin opens server connections up to min_pool_size (one per call, so
// a dead target costs one attempt per tick).
func (pl *pool) fillMin(ctx context.Context) {
	min := pl.conf.min
	pl.mu.Lock()
	need := pl.total < min && pl.params != nil
	if need {
		if !pl.slot(1) {
			need = false
		} else {
			pl.total++
		}
	}
	pl.mu.Unlock()
	if !need {
		return
	}
	s, err := pl.connect(time.Now().Add(pl.p.cfg.ServerConnectTimeout.D()))
	if err != nil {
		pl.mu.Lock()
		pl.total--
		pl.slot(-1)
		pl.mu.Unlock()
		pl.p.log.Warn("pooler: cannot open min_pool_size connection", "db", pl.key.db, "user", pl.key.user, "err", err)
		return
	}
	pl.release(s, true)
}
