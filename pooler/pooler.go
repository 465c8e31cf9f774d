package pooler

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgha/pgha/config"
)

// Version is what SHOW VERSION answers: PgBouncer's format, naming the
// PgBouncer release whose console the pooler matches (CompatVersion).
const Version = "PgBouncer " + CompatVersion + " (pgha pooler 0.1)"

// Pooler is the embedded connection pooler. Build it with New, run it with
// Run; Pause, Resume and Reconnect are safe from any goroutine.
type Pooler struct {
	cfg    config.Pooler
	router Router
	// trackNames are the settings carried per client (see params.go).
	trackNames []string
	log        *slog.Logger
	tls        *tls.Config
	stmts      stmtRegistry

	ctx    context.Context
	done   chan struct{}
	nextID atomic.Uint64

	paused   atomic.Bool
	route    atomic.Pointer[route]
	tick     atomic.Int64 // maintenance ticks, for idle detection
	unixNow  atomic.Int64 // Unix seconds, renewed by maintain (request_time)
	respawns atomic.Int64 // idle sessions moved to fresh goroutines
	nclients atomic.Int64
	// pending counts connections not yet logged in (max_pending_logins);
	// panicCount the recovered panics (see recovered).
	pending    atomic.Int64
	panicCount atomic.Int64

	// mockKey derives the salts shown for unknown users (see userSalt).
	mockKey [32]byte
	auth    authCache
	hooks   testHooks

	// Reaped sessions since the last release of their old stacks, and
	// when that was (maintain's goroutine only; see releaseStacks).
	reapedSince int
	lastRelease time.Time

	mu      sync.Mutex
	users   map[string]secret
	hba     []hbaRule
	pools   map[poolKey]*pool
	dbConns map[string]int
	// userConns counts server connections per user (max_user_connections);
	// dbStates is the console state per database name (see dbconf.go).
	userConns map[string]int
	dbStates  map[string]*dbState
	clients   map[*client]struct{}
	conns     map[net.Conn]struct{} // accepted, still logging in
	closing   bool
	cancels   map[uint64]*client
	primary   string // the primary the rw pools were built for
	// authUser and authPassword: credentials for auth_user that need no
	// auth_file (SetAuthUser).
	authUser, authPassword string
	// routeCh is closed at the next routing change (see routeWake).
	routeCh chan struct{}

	statsWin statsWindow
	started  time.Time

	listeners []net.Listener
	workers   sync.WaitGroup // server pump goroutines
	sessions  sync.WaitGroup // client sessions moved to fresh goroutines
	metrics   *metrics
	shutdown  chan struct{}
	shutOnce  sync.Once
}

// New checks cfg and loads the auth_file. It does not listen yet.
func New(cfg config.Pooler, router Router, log *slog.Logger) (*Pooler, error) {
	if router == nil {
		return nil, errors.New("pooler: no router: pass the cluster view (or a StaticRouter)")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Pooler{
		cfg: cfg, router: router, log: log.With("component", "pooler"),
		ctx: context.Background(), done: make(chan struct{}),
		pools: make(map[poolKey]*pool), dbConns: make(map[string]int),
		userConns: make(map[string]int), dbStates: make(map[string]*dbState),
		clients: make(map[*client]struct{}), cancels: make(map[uint64]*client),
		conns:    make(map[net.Conn]struct{}),
		shutdown: make(chan struct{}),
	}
	p.started = time.Now()
	p.unixNow.Store(p.started.Unix())
	p.trackNames = cfg.TrackedParameters()
	if len(p.trackNames) > nTracked {
		return nil, fmt.Errorf("pooler: track_extra_parameters: at most %d settings", nTracked-len(p.trackNames)+len(cfg.TrackExtraParameters))
	}
	rand.Read(p.mockKey[:])
	p.auth.init()
	if err := p.loadAuth(); err != nil {
		return nil, err
	}
	if cfg.ClientTLS.SSLMode != "" && cfg.ClientTLS.SSLMode != "disable" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientTLS.CertFile, cfg.ClientTLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("pooler: client_tls: %w", err)
		}
		p.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	p.metrics = newMetrics(p)
	return p, nil
}

// SetAuthUser gives auth_user's password without an auth_file entry (the
// daemon passes the superuser's when it defaults auth_query); an entry in
// auth_file wins. Call it before Run.
func (p *Pooler) SetAuthUser(name, password string) error {
	p.mu.Lock()
	p.authUser, p.authPassword = name, password
	p.mu.Unlock()
	return p.loadAuth()
}

// loadAuth (re)reads auth_file and the hba rules.
func (p *Pooler) loadAuth() error {
	p.mu.Lock()
	authFile, hba := p.cfg.AuthFile, p.cfg.HBA
	p.mu.Unlock()
	users := map[string]secret{}
	if authFile != "" {
		var err error
		if users, err = loadUserlist(authFile); err != nil {
			return err
		}
	} else if p.cfg.AuthType != "trust" && p.cfg.AuthQuery == "" {
		p.log.Warn("pooler: no auth_file and no auth_query: every login will fail; set pooler.auth_file")
	}
	p.mu.Lock()
	if p.authUser != "" {
		if _, ok := users[p.authUser]; !ok {
			users[p.authUser] = secret{plain: p.authPassword}
		}
	}
	p.mu.Unlock()
	rules, err := parseHBA(hba)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.users, p.hba = users, rules
	p.mu.Unlock()
	p.auth.forget()
	return nil
}

// Listen binds the configured addresses now, so that callers (and tests)
// know the ports before Run. Run calls it if nobody did.
func (p *Pooler) Listen() error {
	if len(p.listeners) > 0 {
		return nil
	}
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("pooler: listen %s: %w", p.cfg.Listen, err)
	}
	p.listeners = append(p.listeners, ln)
	if p.cfg.ReadOnlyListen != "" {
		ro, err := net.Listen("tcp", p.cfg.ReadOnlyListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("pooler: listen %s: %w", p.cfg.ReadOnlyListen, err)
		}
		p.listeners = append(p.listeners, ro)
	}
	if p.cfg.UnixSocketDir != "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		path := filepath.Join(p.cfg.UnixSocketDir, ".s.PGSQL."+port)
		os.Remove(path)
		ux, err := net.Listen("unix", path)
		if err != nil {
			for _, l := range p.listeners {
				l.Close()
			}
			p.listeners = nil
			return fmt.Errorf("pooler: listen on unix socket %s: %w", path, err)
		}
		p.listeners = append(p.listeners, ux)
	}
	return nil
}

// Addr is the read-write listener's address (after Listen).
func (p *Pooler) Addr() string {
	if len(p.listeners) == 0 {
		return ""
	}
	return p.listeners[0].Addr().String()
}

// ReadOnlyAddr is the read-only listener's address, or "".
func (p *Pooler) ReadOnlyAddr() string {
	if p.cfg.ReadOnlyListen == "" || len(p.listeners) < 2 {
		return ""
	}
	return p.listeners[1].Addr().String()
}

// Run serves clients until ctx ends (or SHUTDOWN from the console), then
// closes every connection.
func (p *Pooler) Run(ctx context.Context) error {
	if err := p.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.ctx = ctx
	p.refreshRoute()
	p.primary, _ = p.router.Primary()
	var wg sync.WaitGroup
	for i, ln := range p.listeners {
		readOnly := p.cfg.ReadOnlyListen != "" && i == 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.acceptLoop(ln, readOnly, &wg)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.maintain(ctx)
	}()
	select {
	case <-ctx.Done():
	case <-p.shutdown:
	}
	close(p.done)
	for _, ln := range p.listeners {
		ln.Close()
	}
	p.mu.Lock()
	p.closing = true
	clients := make([]*client, 0, len(p.clients))
	for c := range p.clients {
		clients = append(clients, c)
	}
	for conn := range p.conns {
		conn.Close()
	}
	pools := make([]*pool, 0, len(p.pools))
	for _, pl := range p.pools {
		pools = append(pools, pl)
	}
	p.mu.Unlock()
	// Each client's session ends with a farewell (57P01); one that has
	// not ended within a few seconds (a client that does not read) is
	// closed.
	for _, c := range clients {
		c.endBy(errShutdown)
	}
	for _, pl := range pools {
		for _, s := range pl.servers() {
			s.close()
		}
		pl.wakeAll()
	}
	cancel()
	stop := time.AfterFunc(3*time.Second, func() {
		for _, c := range clients {
			c.conn.Close()
		}
	})
	defer stop.Stop()
	p.waitAll("client goroutines", &wg)
	p.waitAll("client sessions", &p.sessions)
	for _, pl := range p.poolList() {
		for _, s := range pl.servers() {
			s.close()
		}
	}
	p.waitAll("server pumps", &p.workers)
	return nil
}

func (p *Pooler) acceptLoop(ln net.Listener, readOnly bool, wg *sync.WaitGroup) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Error("pooler: accept failed", "addr", ln.Addr().String(), "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !p.admit(conn) {
			continue
		}
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			p.pending.Add(-1)
			conn.Close()
			return
		}
		p.conns[conn] = struct{}{}
		p.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.handleLogin(conn, readOnly)
			p.mu.Lock()
			delete(p.conns, conn)
			p.mu.Unlock()
			if c != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p.session(c)
				}()
			}
		}()
	}
}

// maintain follows the router and closes servers past their idle time or
// lifetime.
func (p *Pooler) maintain(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	period := p.cfg.StatsPeriod.D()
	if period <= 0 {
		period = time.Minute
	}
	stats := time.NewTicker(period)
	defer stats.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-stats.C:
			p.refreshStats(now)
		case <-p.router.Changed():
			p.guard("routing change", func() {
				p.refreshRoute()
				p.followPrimary(ctx)
			})
			p.routeChanged()
		case <-tick.C:
			p.guard("maintenance", func() { p.tickMaintain(ctx) })
		}
	}
}

// tickMaintain is one maintenance tick: routing, idle clients' stacks,
// servers past their idle time or lifetime, min_pool_size.
func (p *Pooler) tickMaintain(ctx context.Context) {
	p.unixNow.Store(time.Now().Unix())
	p.refreshRoute()
	p.releaseStacks(p.reapIdle(p.tick.Add(1)))
	idle := p.cfg.ServerIdleTimeout.D()
	now := time.Now()
	for _, pl := range p.poolList() {
		life := pl.conf.lifetime
		pl.closeIdle(func(s *server) bool {
			return (idle > 0 && now.Sub(s.lastUsed) > idle) || (life > 0 && now.Sub(s.createdAt) > life) ||
				!p.targetOK(pl.key.readOnly, s.addr)
		})
		if !pl.paused() {
			pl.fillMin(ctx)
		}
	}
}

// routeWake returns a channel closed at the next routing change: pools
// retrying a failed server login wait on it as well as on their timer, so
// they try the new primary at once.
func (p *Pooler) routeWake() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.routeCh == nil {
		p.routeCh = make(chan struct{})
	}
	return p.routeCh
}

func (p *Pooler) routeChanged() {
	p.mu.Lock()
	if p.routeCh != nil {
		close(p.routeCh)
		p.routeCh = nil
	}
	p.mu.Unlock()
}

// followPrimary handles a primary change: pause new transactions, let the
// running ones end (bounded), drop connections to the old primary, resume
// on the newest primary the router names. A new primary named while the
// old one's transactions drain ends the wait at once: the old primary
// stopped taking writes before the new one was promoted, so what still
// runs there cannot commit (a failover goes old -> none -> new, and an
// old primary cut off from the network would otherwise hold every new
// transaction for the whole bound).
func (p *Pooler) followPrimary(ctx context.Context) {
	addr, _ := p.router.Primary()
	p.mu.Lock()
	old := p.primary
	p.mu.Unlock()
	if addr == old {
		return
	}
	p.log.Info("pooler: primary changed, pausing new transactions to switch", "from", old, "to", addr)
	bound := p.cfg.QueryWaitTimeout.D()
	if bound <= 0 || bound > 30*time.Second {
		bound = 30 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, bound/2)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-pctx.Done():
				return
			case <-p.router.Changed():
				if now, _ := p.router.Primary(); now != "" && now != old && now != addr {
					p.log.Info("pooler: a new primary was named while the old one drained; switching now", "primary", now)
					cancel()
					return
				}
			}
		}
	}()
	err := p.Pause(pctx)
	cancel()
	<-watched
	if err != nil && ctx.Err() == nil {
		p.log.Warn("pooler: transactions still running on the old primary; closing them", "err", err)
	}
	p.refreshRoute()
	addr, _ = p.router.Primary()
	p.mu.Lock()
	p.primary = addr
	p.mu.Unlock()
	p.Reconnect(false)
	p.Resume()
	p.log.Info("pooler: resumed on the new primary", "primary", addr)
}

// Pause stops handing out server connections (new transactions wait,
// bounded by query_wait_timeout) and waits until no server connection is
// in use or ctx ends.
func (p *Pooler) Pause(ctx context.Context) error {
	p.paused.Store(true)
	return p.waitIdle(ctx, "")
}

// Resume lets waiting clients continue.
func (p *Pooler) Resume() {
	p.paused.Store(false)
	for _, pl := range p.poolList() {
		pl.wakeAll()
	}
}

// Paused reports whether the pooler is paused.
func (p *Pooler) Paused() bool { return p.paused.Load() }

// Reconnect closes idle server connections now; busy ones are closed when
// released or, with force, at once.
func (p *Pooler) Reconnect(force bool) { p.reconnectDB("", force) }

func (p *Pooler) poolList() []*pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*pool, 0, len(p.pools))
	for _, pl := range p.pools {
		out = append(out, pl)
	}
	return out
}

func (p *Pooler) getPool(k poolKey) *pool {
	conf := p.resolve(k.db, k.user)
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.pools[k]
	if pl == nil {
		st := p.dbStates[k.db]
		if st == nil {
			st = &dbState{}
			p.dbStates[k.db] = st
		}
		pl = &pool{p: p, key: k, conf: conf, st: st}
		p.pools[k] = pl
	}
	return pl
}

// route is the router's answer, cached so that the per-transaction
// checks do not ask the router (which may build it from the whole cluster
// view); refreshed on every Changed signal and every second.
type route struct {
	primary  string
	ok       bool
	replicas []string
}

func (p *Pooler) refreshRoute() {
	r := &route{}
	r.primary, r.ok = p.router.Primary()
	r.replicas = p.router.Replicas()
	p.route.Store(r)
}

func (p *Pooler) currentRoute() *route {
	if r := p.route.Load(); r != nil {
		return r
	}
	p.refreshRoute()
	return p.route.Load()
}

// target picks the address for a new server connection.
func (p *Pooler) target(readOnly bool) (string, error) {
	r := p.currentRoute()
	if readOnly {
		if len(r.replicas) == 0 {
			return "", errors.New("pooler: no healthy replica to route read-only connections to")
		}
		return r.replicas[int(p.nextID.Add(1))%len(r.replicas)], nil
	}
	if !r.ok {
		return "", errors.New("pooler: no primary in the cluster view")
	}
	return r.primary, nil
}

// targetOK reports whether a server at addr is still a valid target.
func (p *Pooler) targetOK(readOnly bool, addr string) bool {
	r := p.currentRoute()
	if readOnly {
		return slices.Contains(r.replicas, addr)
	}
	return r.ok && r.primary == addr
}

func (p *Pooler) addClient(c *client) {
	p.mu.Lock()
	closing := p.closing
	p.clients[c] = struct{}{}
	p.mu.Unlock()
	if closing {
		c.endBy(errShutdown) // shutting down: the session ends at its first read
	}
	c.pool.nclients.Add(1)
}

func (p *Pooler) removeClient(c *client) {
	p.mu.Lock()
	delete(p.clients, c)
	p.mu.Unlock()
	c.pool.nclients.Add(-1)
}

func (p *Pooler) isAdmin(user string) bool {
	return slices.Contains(p.cfg.AdminUsers, user)
}

func (p *Pooler) isStats(user string) bool {
	return slices.Contains(p.cfg.StatsUsers, user)
}

func defaultsForShow() config.Pooler { return config.DefaultPooler() }
