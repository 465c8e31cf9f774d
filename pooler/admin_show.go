package pooler

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// The console's SHOW commands, with the columns (names, order, types) of
// PgBouncer 1.25 (src/admin.c, src/stats.c), so that tools reading them
// by name or by position keep working. Two columns are added at the end
// for Debian's prometheus-pgbouncer-exporter 1.7, which reads the names
// PgBouncer used before: total_requests in SHOW STATS (PgBouncer 1.7's
// total_query_count; without it that exporter's every scrape fails) and
// reserve_pool in SHOW DATABASES (before 1.24's reserve_pool_size).

// CompatVersion is the PgBouncer release whose console the pooler's
// answers match; SHOW VERSION names it first, as PgBouncer's own
// "PgBouncer 1.25.2", so tools that parse it find a version.
const CompatVersion = "1.25.2"

// colsStats are SHOW STATS's columns.
const colsStats = "database total_server_assignment_count:N total_xact_count:N total_query_count:N total_received:N total_sent:N " +
	"total_xact_time:N total_query_time:N total_wait_time:N total_client_parse_count:N total_server_parse_count:N total_bind_count:N " +
	"avg_server_assignment_count:N avg_xact_count:N avg_query_count:N avg_recv:N avg_sent:N avg_xact_time:N avg_query_time:N " +
	"avg_wait_time:N avg_client_parse_count:N avg_server_parse_count:N avg_bind_count:N total_requests:N"

// colsSockets are SHOW CLIENTS's and SHOW SERVERS's columns.
const colsSockets = "type user database replication state addr port:i local_addr local_port:i connect_time request_time " +
	"wait:i wait_us:i close_needed:i ptr link remote_pid:i tls application_name prepared_statements:i id:q"

func (p *Pooler) show(what string) (*resultSet, error) {
	do, ok := showers[what]
	if !ok {
		return nil, fmt.Errorf("unknown SHOW subject %q: try SHOW HELP", what)
	}
	rs := &resultSet{}
	pools := p.poolList()
	sort.Slice(pools, func(i, j int) bool {
		a, b := pools[i].key, pools[j].key
		return a.name()+"\x00"+a.user < b.name()+"\x00"+b.user
	})
	do(p, rs, pools, time.Now(), what)
	return rs, nil
}

// showers answer each SHOW subject: the pools sorted by (database, user),
// the time of the request, and the subject as asked.
var showers = map[string]func(p *Pooler, rs *resultSet, pools []*pool, now time.Time, what string){
	"POOLS":          (*Pooler).showPools,
	"CLIENTS":        (*Pooler).showClients,
	"SERVERS":        (*Pooler).showServers,
	"STATS":          (*Pooler).showStats,
	"STATS_TOTALS":   (*Pooler).showStatsTotals,
	"STATS_AVERAGES": (*Pooler).showStatsTotals,
	"TOTALS":         (*Pooler).showTotals,
	"DATABASES":      func(p *Pooler, rs *resultSet, pools []*pool, _ time.Time, _ string) { p.showDatabases(rs, pools) },
	"USERS":          func(p *Pooler, rs *resultSet, pools []*pool, _ time.Time, _ string) { p.showUsers(rs, pools) },
	"CONFIG":         (*Pooler).showConfig,
	"VERSION":        (*Pooler).showVersion,
	"STATE":          (*Pooler).showState,
	"LISTS":          (*Pooler).showLists,
	"MEM":            (*Pooler).showMem,
	"FDS":            func(p *Pooler, rs *resultSet, pools []*pool, _ time.Time, _ string) { p.showFDs(rs, pools) },
}

// showPools answers SHOW POOLS.
func (p *Pooler) showPools(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols("database user cl_active:i cl_waiting:i cl_active_cancel_req:i cl_waiting_cancel_req:i sv_active:i sv_active_cancel:i " +
		"sv_being_canceled:i sv_idle:i sv_used:i sv_tested:i sv_login:i maxwait:i maxwait_us:i pool_mode load_balance_hosts")
	for _, pl := range pools {
		v := pl.view(now)
		rs.add(pl.key.name(), pl.key.user, v.clients-v.waiting, v.waiting, 0, 0, v.active, 0, v.parked, v.idle, v.used,
			v.tested, v.login, int(v.maxWait/time.Second), int(v.maxWait%time.Second/time.Microsecond), pl.conf.mode.String(), nil)
	}
}

// showClients answers SHOW CLIENTS.
func (p *Pooler) showClients(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols(colsSockets)
	for _, c := range p.clientList() {
		p.clientRow(rs, c, now)
	}
}

// showServers answers SHOW SERVERS.
func (p *Pooler) showServers(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols(colsSockets)
	for _, pl := range pools {
		p.serverRows(rs, pl, now)
	}
}

// showStats answers SHOW STATS.
func (p *Pooler) showStats(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols(colsStats)
	for _, db := range p.statsByDB(pools, now) {
		row := []any{db.name}
		for _, v := range db.cur {
			row = append(row, v)
		}
		for _, v := range db.avg {
			row = append(row, v)
		}
		rs.add(append(row, db.cur[stQuery])...)
	}
}

// showStatsTotals answers SHOW STATS_TOTALS and STATS_AVERAGES.
func (p *Pooler) showStatsTotals(rs *resultSet, pools []*pool, now time.Time, what string) {
	spec := "database server_assignment_count:N xact_count:N query_count:N bytes_received:N bytes_sent:N xact_time:N query_time:N wait_time:N "
	if what == "STATS_TOTALS" {
		spec += "client_parse_count:N server_parse_count:N bind_count:N"
	} else {
		spec += "avg_client_parse_count:N avg_server_parse_count:N avg_bind_count:N"
	}
	rs.cols = cols(spec)
	for _, db := range p.statsByDB(pools, now) {
		vals := db.cur
		if what == "STATS_AVERAGES" {
			vals = db.avg
		}
		row := []any{db.name}
		for _, v := range vals {
			row = append(row, v)
		}
		rs.add(row...)
	}
}

// showTotals answers SHOW TOTALS.
func (p *Pooler) showTotals(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols("name value:N")
	var cur, avg statVals
	for _, db := range p.statsByDB(pools, now) {
		cur.add(db.cur)
		avg.add(db.avg)
	}
	names := []string{"server_assignment_count", "xact_count", "query_count", "client_bytes", "server_bytes", "xact_time",
		"query_time", "wait_time", "ps_client_parse_count", "ps_server_parse_count", "ps_bind_count"}
	for i, n := range names {
		rs.add("total_"+n, cur[i])
	}
	for i, n := range names {
		rs.add("avg_"+n, avg[i])
	}
}

// showConfig answers SHOW CONFIG.
func (p *Pooler) showConfig(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols("key value default changeable")
	for _, kv := range p.configRows() {
		rs.add(kv[0], kv[1], kv[2], "no")
	}
}

// showVersion answers SHOW VERSION.
func (p *Pooler) showVersion(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols("version")
	rs.add(Version)
}

// showState answers SHOW STATE.
func (p *Pooler) showState(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols("key value")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	rs.add("active", yes(!p.paused.Load()))
	rs.add("paused", yes(p.paused.Load()))
	rs.add("suspended", "no")
}

// showLists answers SHOW LISTS.
func (p *Pooler) showLists(rs *resultSet, pools []*pool, now time.Time, what string) {
	rs.cols = cols("list items:i")
	var free, used int
	for _, pl := range pools {
		v := pl.view(now)
		free += v.idle + v.used
		used += v.active + v.parked + v.tested + v.login
	}
	dbs := p.databaseNames(pools)
	for _, r := range []struct {
		k string
		v int
	}{{"databases", len(dbs) + 1}, {"users", len(p.userNames(pools))}, {"peers", 0}, {"pools", len(pools)}, {"peer_pools", 0},
		{"free_clients", 0}, {"used_clients", len(p.clientList())}, {"login_clients", int(p.pending.Load())},
		{"free_servers", 0}, {"used_servers", free + used},
		{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0}} {
		rs.add(r.k, r.v)
	}
}

// showMem answers SHOW MEM.
func (p *Pooler) showMem(rs *resultSet, pools []*pool, now time.Time, what string) {
	// PgBouncer shows its slab caches; these are the pooler's
	// objects of the same kinds: size of one, how many are in use.
	rs.cols = cols("name size:i used:i free:i memtotal:i")
	var servers int
	for _, pl := range pools {
		_, _, _, total := pl.counts()
		servers += total
	}
	ncl := len(p.clientList())
	rows := []struct {
		n       string
		size, k int
	}{
		{"user_cache", int(unsafe.Sizeof(secret{})), len(p.userNames(pools))},
		{"db_cache", int(unsafe.Sizeof(dbState{})), len(p.databaseNames(pools))},
		{"pool_cache", int(unsafe.Sizeof(pool{})), len(pools)},
		{"server_cache", int(unsafe.Sizeof(server{})), servers},
		{"client_cache", int(unsafe.Sizeof(client{})), ncl},
		{"iobuf_cache", ioBufSize, servers * 3},
	}
	for _, r := range rows {
		rs.add(r.n, r.size, r.k, 0, r.size*r.k)
	}
}

// poolView is a pool's state for SHOW POOLS, LISTS and the metrics.
type poolView struct {
	clients, waiting                          int
	active, idle, used, tested, login, parked int
	maxWait                                   time.Duration
	total                                     int
}

// view counts a pool's clients and servers by PgBouncer's states. An
// idle server past server_check_delay is "used": it is checked before
// its next client gets it.
func (pl *pool) view(now time.Time) poolView {
	check := pl.p.cfg.ServerCheckDelay.D()
	checks := pl.p.cfg.ServerCheckQuery != ""
	nowMono := int64(now.Sub(epoch))
	pl.mu.Lock()
	defer pl.mu.Unlock()
	v := poolView{clients: int(pl.nclients.Load()), waiting: len(pl.waiters), total: pl.total}
	v.login = pl.total - len(pl.all)
	for _, s := range pl.idle {
		if checks && now.Sub(s.lastUsed) >= check {
			v.used++
		} else {
			v.idle++
		}
	}
	for s := range pl.all {
		switch {
		case s.parked:
			v.parked++
		case s.state.Load() == srvTested:
			v.tested++
		}
	}
	v.active = len(pl.all) - len(pl.idle) - v.parked - v.tested
	if v.active < 0 {
		v.active = 0
	}
	for _, c := range pl.waiters {
		if c.waitStart != 0 {
			if d := time.Duration(nowMono - c.waitStart); d > v.maxWait {
				v.maxWait = d
			}
		}
	}
	return v
}

// dbStats are one database's rows of the STATS commands.
type dbStats struct {
	name     string
	cur, avg statVals
}

// statsByDB adds up the pools' counters per database name; the
// averages are of those sums, as PgBouncer adds the pools up first.
func (p *Pooler) statsByDB(pools []*pool, now time.Time) []dbStats {
	var out []dbStats
	idx := map[string]int{}
	var d time.Duration
	for _, pl := range pools {
		cur, old, since := p.statsOf(pl, now)
		d = since
		i, ok := idx[pl.key.name()]
		if !ok {
			i = len(out)
			idx[pl.key.name()] = i
			out = append(out, dbStats{name: pl.key.name()})
		}
		out[i].cur.add(cur)
		out[i].avg.add(old) // the snapshot's sum until averaged below
	}
	for i := range out {
		out[i].avg = average(out[i].cur, out[i].avg, d)
	}
	return out
}

func (p *Pooler) clientRow(rs *resultSet, c *client, now time.Time) {
	state := [...]string{"idle", "active", "waiting"}[c.state.Load()]
	host, port := hostPort(c.conn.RemoteAddr().String())
	lhost, lport := hostPort(c.conn.LocalAddr().String())
	link := ""
	c.mu.Lock()
	if c.srv != nil {
		link = fmt.Sprintf("%p", c.srv)
		state = "active"
	}
	app := c.tracked[appNameIdx]
	nstmts := len(c.stmts)
	c.mu.Unlock()
	var wait time.Duration
	if c.pool != nil {
		c.pool.mu.Lock()
		if c.waitStart != 0 {
			wait = time.Duration(int64(now.Sub(epoch)) - c.waitStart)
		}
		c.pool.mu.Unlock()
	}
	tls := ""
	if c.tls {
		tls = "TLS"
	}
	req := c.since
	if r := c.lastRequest.Load(); r != 0 {
		req = time.Unix(r, 0)
	}
	rs.add("C", c.user, c.db, "none", state, host, port, lhost, lport, fmtTime(c.since), fmtTime(req),
		int(wait/time.Second), int(wait%time.Second/time.Microsecond), 0, fmt.Sprintf("%p", c), link, 0, tls, app, nstmts, int64(c.id))
}

func (p *Pooler) serverRows(rs *resultSet, pl *pool, now time.Time) {
	check := p.cfg.ServerCheckDelay.D()
	pl.mu.Lock()
	idle := map[*server]bool{}
	for _, s := range pl.idle {
		idle[s] = true
	}
	parked := map[*server]bool{}
	for s := range pl.all {
		if s.parked {
			parked[s] = true
		}
	}
	pl.mu.Unlock()
	for _, s := range pl.servers() {
		state := "active"
		switch {
		case parked[s]:
			state = "being_canceled"
		case s.state.Load() == srvTested:
			state = "tested"
		case idle[s] && p.cfg.ServerCheckQuery != "" && now.Sub(s.lastUsed) >= check:
			state = "used"
		case idle[s]:
			state = "idle"
		}
		host, port := hostPort(s.addr)
		lhost, lport := hostPort(s.conn.LocalAddr().String())
		link, app := "", ""
		if c := s.client.Load(); c != nil {
			link = fmt.Sprintf("%p", c)
			c.mu.Lock()
			app = c.tracked[appNameIdx]
			c.mu.Unlock()
		}
		closeNeeded := 0
		if s.closeNeeded.Load() {
			closeNeeded = 1
		}
		rs.add("S", pl.key.user, pl.key.name(), "none", state, host, port, lhost, lport, fmtTime(s.createdAt), fmtTime(s.lastUsed),
			0, 0, closeNeeded, fmt.Sprintf("%p", s), link, int64(s.pid), "", app, int(s.nprep.Load()), int64(s.id))
	}
}

// fmtTime is PgBouncer's timestamp format (local time and zone).
func fmtTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// databaseNames are the database names the console shows: configured
// [databases] entries (not "*") and those with pools.
func (p *Pooler) databaseNames(pools []*pool) []string {
	seen := map[string]bool{}
	var out []string
	for name := range p.cfg.Databases {
		if name != "*" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, pl := range pools {
		if n := pl.key.name(); !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (p *Pooler) showDatabases(rs *resultSet, pools []*pool) {
	rs.cols = cols("name host port:i database force_user pool_size:i min_pool_size:i reserve_pool_size:i server_lifetime:i pool_mode " +
		"load_balance_hosts max_connections:i current_connections:i max_client_connections:i current_client_connections:i paused:i disabled:i reserve_pool:i")
	host, port := "", 0
	if a, ok := p.router.Primary(); ok {
		host, port = hostPort(a)
	}
	clients := map[string]int{}
	for _, c := range p.clientList() {
		if c.pool != nil {
			clients[c.pool.key.name()]++
		}
	}
	for _, name := range p.databaseNames(pools) {
		db := strings.TrimSuffix(name, "_ro")
		readOnly := db != name && p.hasROPool(pools, db)
		if !readOnly {
			db = name
		}
		d, _ := p.dbEntry(db)
		c := p.resolve(db, "")
		var mode any
		if d.PoolMode != "" {
			mode = d.PoolMode
		}
		var force any
		if d.User != "" {
			force = d.User
		}
		h, pt := host, port
		if readOnly {
			h, pt = "", 0 // spread over the replicas
		}
		current := 0
		for _, pl := range pools {
			if pl.key.name() == name {
				_, _, _, t := pl.counts()
				current += t
			}
		}
		st := p.dbStateIf(db)
		paused, disabled := p.paused.Load(), false
		if st != nil {
			paused = paused || st.paused.Load()
			disabled = st.disabled.Load()
		}
		rs.add(name, h, pt, c.dbname, force, c.size, c.min, c.reserve, int(c.lifetime/time.Second), mode, nil,
			c.maxDB, current, 0, clients[name], paused, disabled, c.reserve)
	}
	_, lport := hostPort(p.Addr())
	rs.add("pgbouncer", nil, lport, "pgbouncer", "pgbouncer", 2, 0, 0, int(p.cfg.ServerLifetime.D()/time.Second), "statement", nil,
		0, 0, 0, 0, false, false, 0)
}

// hasROPool reports whether db has pools on the read-only port.
func (p *Pooler) hasROPool(pools []*pool, db string) bool {
	for _, pl := range pools {
		if pl.key.readOnly && pl.key.db == db {
			return true
		}
	}
	return false
}

// userNames are the users the console shows: auth_file's, [users]
// entries and those with pools.
func (p *Pooler) userNames(pools []*pool) []string {
	seen := map[string]bool{}
	p.mu.Lock()
	for u := range p.users {
		seen[u] = true
	}
	p.mu.Unlock()
	for u := range p.cfg.Users {
		seen[u] = true
	}
	for _, pl := range pools {
		seen[pl.key.user] = true
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

func (p *Pooler) showUsers(rs *resultSet, pools []*pool) {
	rs.cols = cols("name pool_size reserve_pool_size pool_mode max_user_connections:i current_connections:i " +
		"max_user_client_connections:i current_client_connections:i")
	conns, clients := map[string]int{}, map[string]int{}
	for _, pl := range pools {
		_, _, _, t := pl.counts()
		conns[pl.key.user] += t
	}
	for _, c := range p.clientList() {
		clients[c.user]++
	}
	for _, name := range p.userNames(pools) {
		u := p.cfg.Users[name]
		// PgBouncer prints the overrides with %9d, "" when unset.
		size, reserve := "", ""
		if u.PoolSize != nil {
			size = fmt.Sprintf("%9d", *u.PoolSize)
		}
		if u.ReservePoolSize != nil {
			reserve = fmt.Sprintf("%9d", *u.ReservePoolSize)
		}
		var mode any
		if u.PoolMode != "" {
			mode = u.PoolMode
		}
		maxConns := p.cfg.MaxUserConnections
		if u.MaxUserConnections > 0 {
			maxConns = u.MaxUserConnections
		}
		rs.add(name, size, reserve, mode, maxConns, conns[name], 0, clients[name])
	}
}

// showFDs lists the sockets: listeners, clients, servers (PgBouncer's
// SHOW FDS; passwords and SCRAM keys are never shown).
func (p *Pooler) showFDs(rs *resultSet, pools []*pool) {
	rs.cols = cols("fd:i task user database addr port:i cancel:q link:i client_encoding std_strings datestyle timezone password scram_client_key scram_server_key")
	for _, ln := range p.listeners {
		host, port := hostPort(ln.Addr().String())
		rs.add(connFD(ln), "pooler", nil, nil, host, port, int64(0), 0, nil, nil, nil, nil, nil, nil, nil)
	}
	for _, c := range p.clientList() {
		host, port := hostPort(c.conn.RemoteAddr().String())
		link := 0
		c.mu.Lock()
		if c.srv != nil {
			link = connFD(c.srv.conn)
		}
		t := c.tracked
		c.mu.Unlock()
		rs.add(connFD(c.conn), "client", c.user, c.db, host, port, int64(uint64(c.pid)<<32|uint64(c.secret)), link,
			nilIfEmpty(t[0]), nilIfEmpty(t[3]), nilIfEmpty(t[1]), nilIfEmpty(t[2]), nil, nil, nil)
	}
	for _, pl := range pools {
		for _, s := range pl.servers() {
			host, port := hostPort(s.addr)
			link := 0
			if c := s.client.Load(); c != nil {
				link = connFD(c.conn)
			}
			rs.add(connFD(s.conn), "server", pl.key.user, pl.key.name(), host, port, int64(uint64(s.pid)<<32|uint64(s.secret)), link,
				nil, nil, nil, nil, nil, nil, nil)
		}
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// connFD is the file descriptor under a connection or listener, or -1.
func connFD(x any) int {
	if r, ok := x.(*rawConn); ok {
		x = r.Conn
	}
	sc, ok := x.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func (p *Pooler) configRows() [][3]string {
	c, d := p.cfg, defaultsForShow()
	dur := func(x interface{ Seconds() float64 }) string { return strconv.FormatFloat(x.Seconds(), 'f', -1, 64) }
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		host, port = c.Listen, ""
	}
	dhost, dport, _ := net.SplitHostPort(d.Listen)
	return [][3]string{
		{"listen_addr", host, dhost},
		{"listen_port", port, dport},
		{"unix_socket_dir", c.UnixSocketDir, d.UnixSocketDir},
		{"pool_mode", c.PoolMode, d.PoolMode},
		{"default_pool_size", strconv.Itoa(c.DefaultPoolSize), strconv.Itoa(d.DefaultPoolSize)},
		{"min_pool_size", strconv.Itoa(c.MinPoolSize), strconv.Itoa(d.MinPoolSize)},
		{"reserve_pool_size", strconv.Itoa(c.ReservePoolSize), strconv.Itoa(d.ReservePoolSize)},
		{"reserve_pool_timeout", dur(c.ReservePoolTimeout), dur(d.ReservePoolTimeout)},
		{"max_client_conn", strconv.Itoa(c.MaxClientConn), strconv.Itoa(d.MaxClientConn)},
		{"max_db_connections", strconv.Itoa(c.MaxDBConnections), strconv.Itoa(d.MaxDBConnections)},
		{"max_user_connections", strconv.Itoa(c.MaxUserConnections), strconv.Itoa(d.MaxUserConnections)},
		{"query_wait_timeout", dur(c.QueryWaitTimeout), dur(d.QueryWaitTimeout)},
		{"client_idle_timeout", dur(c.ClientIdleTimeout), dur(d.ClientIdleTimeout)},
		{"server_idle_timeout", dur(c.ServerIdleTimeout), dur(d.ServerIdleTimeout)},
		{"server_lifetime", dur(c.ServerLifetime), dur(d.ServerLifetime)},
		{"idle_transaction_timeout", dur(c.IdleTransactionTimeout), dur(d.IdleTransactionTimeout)},
		{"server_connect_timeout", dur(c.ServerConnectTimeout), dur(d.ServerConnectTimeout)},
		{"server_login_retry", dur(c.ServerLoginRetry), dur(d.ServerLoginRetry)},
		{"server_reset_query", c.ServerResetQuery, d.ServerResetQuery},
		{"server_check_delay", dur(c.ServerCheckDelay), dur(d.ServerCheckDelay)},
		{"server_check_query", c.ServerCheckQuery, d.ServerCheckQuery},
		{"max_prepared_statements", strconv.Itoa(c.MaxPreparedStatements), strconv.Itoa(d.MaxPreparedStatements)},
		{"max_packet_size", strconv.FormatInt(int64(c.MaxPacketSize), 10), strconv.FormatInt(int64(d.MaxPacketSize), 10)},
		{"max_client_prepared_statements", strconv.Itoa(c.MaxClientPreparedStatements), strconv.Itoa(d.MaxClientPreparedStatements)},
		{"client_login_timeout", dur(c.ClientLoginTimeout), dur(d.ClientLoginTimeout)},
		{"max_pending_logins", strconv.Itoa(c.MaxPendingLogins), strconv.Itoa(d.MaxPendingLogins)},
		{"stats_period", dur(c.StatsPeriod), dur(d.StatsPeriod)},
		{"track_extra_parameters", strings.Join(c.TrackExtraParameters, ","), strings.Join(d.TrackExtraParameters, ",")},
		{"ignore_startup_parameters", strings.Join(c.IgnoreStartupParameters, ","), strings.Join(d.IgnoreStartupParameters, ",")},
		{"auth_type", c.AuthType, d.AuthType},
		{"auth_file", c.AuthFile, d.AuthFile},
		{"auth_query", c.AuthQuery, d.AuthQuery},
		{"auth_user", c.AuthUser, d.AuthUser},
		{"admin_users", strings.Join(c.AdminUsers, ","), ""},
		{"stats_users", strings.Join(c.StatsUsers, ","), ""},
		{"client_tls_sslmode", c.ClientTLS.SSLMode, d.ClientTLS.SSLMode},
		{"client_tls_cert_file", c.ClientTLS.CertFile, d.ClientTLS.CertFile},
		{"client_tls_key_file", c.ClientTLS.KeyFile, d.ClientTLS.KeyFile},
	}
}
