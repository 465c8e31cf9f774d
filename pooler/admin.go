package pooler

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The admin console: database "pgbouncer" (alias "pgha"), simple query
// protocol only, PgBouncer's commands and column names.

type resultSet struct {
	cols []column
	rows [][]*string
}

func (r *resultSet) add(vals ...any) {
	row := make([]*string, len(vals))
	for i, v := range vals {
		var s string
		switch v := v.(type) {
		case nil:
			continue
		case string:
			s = v
		case int:
			s = strconv.Itoa(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		case bool:
			s = "0"
			if v {
				s = "1"
			}
		default:
			s = fmt.Sprint(v)
		}
		row[i] = &s
	}
	r.rows = append(r.rows, row)
}

func cols(spec string) []column {
	var out []column
	for _, f := range strings.Fields(spec) {
		name, typ, _ := strings.Cut(f, ":")
		oid := int32(25)
		if typ == "i" {
			oid = 20
		}
		out = append(out, column{name: name, oid: oid})
	}
	return out
}

// serveAdmin runs a console session for c after authentication.
func (p *Pooler) serveAdmin(c *client) error {
	var m msgBuilder
	m.begin('R').i32(0).end()
	m.paramStatus("server_version", "15.0 (pgha pooler)").paramStatus("client_encoding", "UTF8").
		paramStatus("server_encoding", "UTF8").paramStatus("DateStyle", "ISO, MDY").
		paramStatus("standard_conforming_strings", "on").paramStatus("integer_datetimes", "on").
		paramStatus("application_name", "")
	m.begin('K').i32(0).i32(0).end().readyForQuery('I')
	if _, err := c.conn.Write(m.b); err != nil {
		return err
	}
	admin := p.isAdmin(c.user)
	for {
		var h [5]byte
		if _, err := io.ReadFull(c.conn, h[:]); err != nil {
			return err
		}
		n, err := bodyLen(h[:], 1<<20)
		if err != nil {
			return err
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.conn, body); err != nil {
			return err
		}
		switch h[0] {
		case 'X':
			return nil
		case 'Q':
		default:
			var e msgBuilder
			e.errorMsg("ERROR", codeFeatureNotSupp, "the admin console supports only the simple query protocol").readyForQuery('I')
			if _, err := c.conn.Write(e.b); err != nil {
				return err
			}
			continue
		}
		q, _, _ := cstring(body)
		out, stop := p.adminQuery(q, admin)
		if _, err := c.conn.Write(out); err != nil {
			return err
		}
		if stop {
			return nil
		}
	}
}

// adminQuery runs one console command and returns the protocol answer.
func (p *Pooler) adminQuery(q string, admin bool) ([]byte, bool) {
	var m msgBuilder
	words := strings.Fields(strings.TrimRight(strings.TrimSpace(q), "; \t\n"))
	if len(words) == 0 {
		return m.begin('I').end().readyForQuery('I').b, false
	}
	cmd := strings.ToUpper(words[0])
	arg := ""
	if len(words) > 1 {
		arg = words[1]
	}
	fail := func(code, msg string) ([]byte, bool) {
		return m.errorMsg("ERROR", code, msg).readyForQuery('I').b, false
	}
	if cmd == "SHOW" {
		if arg == "" {
			return fail("42601", "SHOW needs a subject: POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, VERSION, LISTS")
		}
		rs, err := p.show(strings.ToUpper(arg))
		if err != nil {
			return fail("42601", err.Error())
		}
		m.rowDescription(rs.cols)
		for _, r := range rs.rows {
			m.dataRow(r)
		}
		return m.begin('C').str("SHOW").end().readyForQuery('I').b, false
	}
	if !admin {
		return fail("42501", "admin access needed: user is only in stats_users")
	}
	stop := false
	switch cmd {
	case "PAUSE":
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := p.Pause(ctx)
		cancel()
		if err != nil {
			return fail(codeConnFailure, err.Error())
		}
	case "RESUME":
		p.Resume()
	case "RELOAD":
		if err := p.loadAuth(); err != nil {
			return fail("F0000", err.Error())
		}
	case "RECONNECT":
		p.Reconnect(false)
	case "KILL":
		if arg == "" {
			return fail("42601", "KILL needs a database name")
		}
		p.kill(arg)
	case "WAIT_CLOSE":
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && p.serverCount(arg) > 0 {
			p.Reconnect(false)
			time.Sleep(20 * time.Millisecond)
		}
	case "SHUTDOWN":
		p.shutOnce.Do(func() { close(p.shutdown) })
		stop = true
	default:
		return fail("42601", fmt.Sprintf("unknown command %q: try SHOW, PAUSE, RESUME, RELOAD, RECONNECT, KILL, WAIT_CLOSE, SHUTDOWN", words[0]))
	}
	return m.begin('C').str(cmd).end().readyForQuery('I').b, stop
}

func (p *Pooler) show(what string) (*resultSet, error) {
	rs := &resultSet{}
	pools := p.poolList()
	sort.Slice(pools, func(i, j int) bool {
		a, b := pools[i].key, pools[j].key
		return a.db+"\x00"+a.user < b.db+"\x00"+b.user
	})
	mode := p.cfg.PoolMode
	switch what {
	case "POOLS":
		rs.cols = cols("database user cl_active:i cl_waiting:i cl_active_cancel_req:i cl_waiting_cancel_req:i sv_active:i sv_active_cancel:i sv_being_canceled:i sv_idle:i sv_used:i sv_tested:i sv_login:i maxwait:i maxwait_us:i pool_mode")
		for _, pl := range pools {
			active, idle, waiting, _ := pl.counts()
			cl := int(pl.nclients.Load())
			var login, tested int
			for _, s := range pl.servers() {
				switch s.state.Load() {
				case srvLogin:
					login++
				case srvTested:
					tested++
				}
			}
			parked := pl.parkedCount()
			rs.add(pl.key.name(), pl.key.user, cl-waiting, waiting, 0, 0, active-parked, 0, parked, idle, 0, tested, login, 0, 0, mode)
		}
	case "CLIENTS":
		rs.cols = cols("type user database state addr port:i local_addr local_port:i connect_time request_time wait:i wait_us:i close_needed:i ptr link remote_pid:i tls application_name prepared_statements:i")
		for _, c := range p.clientList() {
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
			c.mu.Unlock()
			rs.add("C", c.user, c.db, state, host, port, lhost, lport, c.since.Format(time.DateTime), c.since.Format(time.DateTime),
				0, 0, 0, fmt.Sprintf("%p", c), link, 0, "", app, len(c.stmts))
		}
	case "SERVERS":
		rs.cols = cols("type user database state addr port:i local_addr local_port:i connect_time request_time wait:i wait_us:i close_needed:i ptr link remote_pid:i tls application_name prepared_statements:i")
		for _, pl := range pools {
			for _, s := range pl.servers() {
				state := [...]string{"idle", "active", "used", "tested", "login"}[s.state.Load()]
				host, port := hostPort(s.addr)
				lhost, lport := hostPort(s.conn.LocalAddr().String())
				link := ""
				if c := s.client.Load(); c != nil {
					link = fmt.Sprintf("%p", c)
				}
				rs.add("S", pl.key.user, pl.key.name(), state, host, port, lhost, lport, s.createdAt.Format(time.DateTime),
					s.lastUsed.Format(time.DateTime), 0, 0, 0, fmt.Sprintf("%p", s), link, int64(s.pid), "", "", 0)
			}
		}
	case "STATS", "STATS_TOTALS":
		rs.cols = cols("database total_xact_count:i total_query_count:i total_received:i total_sent:i total_xact_time:i total_query_time:i total_wait_time:i avg_xact_count:i avg_query_count:i avg_recv:i avg_sent:i avg_xact_time:i avg_query_time:i avg_wait_time:i")
		byDB := map[string]*[4]int64{}
		var order []string
		for _, pl := range pools {
			t := byDB[pl.key.name()]
			if t == nil {
				t = &[4]int64{}
				byDB[pl.key.name()] = t
				order = append(order, pl.key.name())
			}
			t[0] += pl.stats.xact.Load()
			t[1] += pl.stats.query.Load()
			t[2] += pl.stats.recvBytes.Load()
			t[3] += pl.stats.sentBytes.Load()
			_ = t
		}
		for _, db := range order {
			t := byDB[db]
			var wait int64
			for _, pl := range pools {
				if pl.key.name() == db {
					wait += pl.stats.waitNanos.Load() / 1000
				}
			}
			rs.add(db, t[0], t[1], t[2], t[3], 0, 0, wait, 0, 0, 0, 0, 0, 0, 0)
		}
	case "DATABASES":
		rs.cols = cols("name host port:i database force_user pool_size:i min_pool_size:i reserve_pool:i pool_mode max_connections:i current_connections:i paused:i disabled:i")
		host, port := "", 0
		if a, ok := p.router.Primary(); ok {
			host, port = hostPort(a)
		}
		seen := map[string]bool{}
		for _, pl := range pools {
			if seen[pl.key.name()] {
				continue
			}
			seen[pl.key.name()] = true
			h, pt := host, port
			if pl.key.readOnly {
				h, pt = "", 0 // spread over the replicas
			}
			rs.add(pl.key.name(), h, pt, pl.key.db, "", p.cfg.DefaultPoolSize, p.cfg.MinPoolSize, p.cfg.ReservePoolSize,
				mode, p.cfg.MaxDBConnections, p.serverCount(pl.key.db), p.paused.Load(), 0)
		}
		rs.add("pgbouncer", "", port, "pgbouncer", "pgbouncer", 2, 0, 0, "statement", 0, 0, 0, 0)
	case "CONFIG":
		rs.cols = cols("key value default changeable")
		for _, kv := range p.configRows() {
			rs.add(kv[0], kv[1], kv[2], "no")
		}
	case "VERSION":
		rs.cols = cols("version")
		rs.add(Version)
	case "LISTS":
		rs.cols = cols("list items:i")
		var used, free int
		for _, pl := range pools {
			a, i, _, _ := pl.counts()
			used += a
			free += i
		}
		users := map[string]bool{}
		dbs := map[string]bool{}
		for _, pl := range pools {
			users[pl.key.user] = true
			dbs[pl.key.db] = true
		}
		ncl := len(p.clientList())
		for _, r := range []struct {
			k string
			v int
		}{{"databases", len(dbs)}, {"users", len(users)}, {"peers", 0}, {"pools", len(pools)}, {"peer_pools", 0},
			{"free_clients", 0}, {"used_clients", ncl}, {"login_clients", int(p.pending.Load())}, {"free_servers", free}, {"used_servers", used},
			{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0}} {
			rs.add(r.k, r.v)
		}
	default:
		return nil, fmt.Errorf("unknown SHOW subject %q: try POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, VERSION, LISTS", what)
	}
	return rs, nil
}

func (p *Pooler) configRows() [][3]string {
	c, d := p.cfg, defaultsForShow()
	dur := func(x interface{ Seconds() float64 }) string { return strconv.FormatFloat(x.Seconds(), 'f', -1, 64) }
	return [][3]string{
		{"listen_addr", c.Listen, d.Listen},
		{"pool_mode", c.PoolMode, d.PoolMode},
		{"default_pool_size", strconv.Itoa(c.DefaultPoolSize), strconv.Itoa(d.DefaultPoolSize)},
		{"min_pool_size", strconv.Itoa(c.MinPoolSize), strconv.Itoa(d.MinPoolSize)},
		{"reserve_pool_size", strconv.Itoa(c.ReservePoolSize), strconv.Itoa(d.ReservePoolSize)},
		{"reserve_pool_timeout", dur(c.ReservePoolTimeout), dur(d.ReservePoolTimeout)},
		{"max_client_conn", strconv.Itoa(c.MaxClientConn), strconv.Itoa(d.MaxClientConn)},
		{"max_db_connections", strconv.Itoa(c.MaxDBConnections), strconv.Itoa(d.MaxDBConnections)},
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
		{"auth_type", c.AuthType, d.AuthType},
		{"auth_file", c.AuthFile, d.AuthFile},
		{"auth_query", c.AuthQuery, d.AuthQuery},
		{"auth_user", c.AuthUser, d.AuthUser},
		{"admin_users", strings.Join(c.AdminUsers, ","), ""},
		{"stats_users", strings.Join(c.StatsUsers, ","), ""},
		{"client_tls_sslmode", c.ClientTLS.SSLMode, d.ClientTLS.SSLMode},
		{"unix_socket_dir", c.UnixSocketDir, d.UnixSocketDir},
	}
}

// hostPort splits a target for SHOW SERVERS; a socket path shows as
// PgBouncer shows one: addr "unix" and the port from .s.PGSQL.<port>.
func hostPort(a string) (string, int) {
	if i := strings.LastIndex(a, ".s.PGSQL."); strings.HasPrefix(a, "/") && i >= 0 {
		n, _ := strconv.Atoi(a[i+len(".s.PGSQL."):])
		return "unix", n
	}
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func (p *Pooler) clientList() []*client {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*client, 0, len(p.clients))
	for c := range p.clients {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// serverCount counts open server connections to db ("" for all).
func (p *Pooler) serverCount(db string) int {
	n := 0
	for _, pl := range p.poolList() {
		if db == "" || pl.key.db == db {
			_, _, _, total := pl.counts()
			n += total
		}
	}
	return n
}

// kill drops every client and server connection of db; each client gets
// PgBouncer's "database removed".
func (p *Pooler) kill(db string) {
	for _, c := range p.clientList() {
		if c.db == db {
			c.endBy(errKilledDB)
		}
	}
	for _, pl := range p.poolList() {
		if pl.key.db == db {
			for _, s := range pl.servers() {
				s.close()
			}
		}
	}
}
