package convert

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/pooler"
)

// pgbouncerDefaultAuthQuery is PgBouncer's auth_query default, used when
// a pgbouncer.ini sets auth_user without auth_query.
const pgbouncerDefaultAuthQuery = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin"

// FromPgBouncer converts a pgbouncer.ini (and, when given, its
// userlist.txt) to the pooler section of a pgha config: the [pgbouncer]
// settings, [databases] and [users]. Where the ini leaves a key out,
// the result has PgBouncer's default where it differs from pgha's and
// applications would notice (pool_mode session, auth_type md5, the Unix
// socket in /tmp), so that they see the same pooler. What pgha cannot
// carry is listed as a Note with the reason; a setting whose
// loss would let different clients in (an authentication method or
// client TLS mode pgha lacks) is an error instead. iniPath resolves
// relative paths (auth_file, auth_hba_file, %include). The result passes
// config validation.
func FromPgBouncer(ini []byte, userlist []byte, iniPath string) (config.Pooler, []Note, error) {
	dir := filepath.Dir(iniPath)
	secs, err := parseINI(ini, dir, 0)
	if err != nil {
		return config.Pooler{}, nil, err
	}
	c := config.DefaultPooler()
	// PgBouncer's defaults that differ from pgha's and that clients see.
	c.PoolMode = "session"
	c.AuthType = "md5"
	c.UnixSocketDir = "/tmp"
	cv := &converter{c: &c, dir: dir}
	host, port := "", "6432"
	for _, kv := range secs["pgbouncer"] {
		switch kv.key {
		case "listen_addr":
			host = kv.val
		case "listen_port":
			port = kv.val
		default:
			cv.setting(kv.key, kv.val)
		}
	}
	cv.listen(host, port)
	for _, kv := range secs["databases"] {
		cv.database(kv.key, kv.val)
	}
	for _, kv := range secs["users"] {
		cv.user(kv.key, kv.val)
	}
	if len(secs["peers"]) > 0 {
		cv.drop("[peers]", "pgha has no peering: cancel requests are taken by the pooler that owns the client")
	}
	if c.AuthUser != "" && c.AuthQuery == "" {
		c.AuthQuery = pgbouncerDefaultAuthQuery
	}
	if c.AuthQuery != "" && c.AuthUser == "" {
		cv.drop("auth_query", "no auth_user: PgBouncer then runs it as nobody; set pooler.auth_user (pgha defaults to the superuser when neither auth_file nor auth_query is set)")
		c.AuthQuery = ""
	}
	if userlist != nil {
		cv.checkUserlist(userlist)
	}
	if cv.err != nil {
		return config.Pooler{}, nil, cv.err
	}
	if err := c.Validate(); err != nil {
		return config.Pooler{}, nil, fmt.Errorf("convert: the converted pooler settings do not pass pgha's checks: %w", err)
	}
	sort.SliceStable(cv.dropped, func(i, j int) bool { return cv.dropped[i].Key < cv.dropped[j].Key })
	return c, cv.dropped, nil
}

type iniKV struct{ key, val string }

// parseINI reads PgBouncer's ini format: [section], key = value,
// comments starting with ; or #, and %include FILE.
func parseINI(data []byte, dir string, depth int) (map[string][]iniKV, error) {
	out := map[string][]iniKV{}
	sec := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == ';' || line[0] == '#':
			continue
		case strings.HasPrefix(line, "%include"):
			if depth > 10 {
				return nil, fmt.Errorf("convert: pgbouncer.ini line %d: %%include nested too deep", ln)
			}
			path := strings.TrimSpace(strings.TrimPrefix(line, "%include"))
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			inc, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("convert: pgbouncer.ini line %d: %%include: %w", ln, err)
			}
			more, err := parseINI(inc, filepath.Dir(path), depth+1)
			if err != nil {
				return nil, err
			}
			for s, kvs := range more {
				out[s] = append(out[s], kvs...)
			}
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("convert: pgbouncer.ini line %d: %q is not a [section]", ln, line)
			}
			sec = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("convert: pgbouncer.ini line %d: %q is not key = value", ln, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if sec == "pgbouncer" {
			k = strings.ToLower(k)
		} else if len(k) > 1 && k[0] == '"' && k[len(k)-1] == '"' {
			k = strings.ReplaceAll(k[1:len(k)-1], `""`, `"`)
		}
		if sec == "" {
			return nil, fmt.Errorf("convert: pgbouncer.ini line %d: %s outside a section", ln, k)
		}
		out[sec] = append(out[sec], iniKV{k, v})
	}
	return out, sc.Err()
}

type converter struct {
	c       *config.Pooler
	dir     string
	dropped []Note
	err     error
}

func (cv *converter) drop(key, reason string) {
	cv.dropped = append(cv.dropped, Note{Key: key, Reason: reason})
}

func (cv *converter) fail(format string, args ...any) {
	if cv.err == nil {
		cv.err = fmt.Errorf("convert: "+format, args...)
	}
}

func (cv *converter) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cv.dir, p)
}

func (cv *converter) integer(key, v string, dst *int) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		cv.fail("%s = %q: want a whole number", key, v)
		return
	}
	*dst = n
}

// seconds reads PgBouncer's times: a number of seconds, fractions allowed.
func (cv *converter) seconds(key, v string, dst *config.Duration) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		cv.fail("%s = %q: want a number of seconds", key, v)
		return
	}
	*dst = config.Duration(time.Duration(f * float64(time.Second)))
}

func boolean(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "1", "yes", "on", "true":
		return true, true
	case "0", "no", "off", "false":
		return false, true
	}
	return false, false
}

func list(v string) []string {
	out := []string{}
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// listen sets pooler.listen from listen_addr and listen_port.
func (cv *converter) listen(host, port string) {
	if _, err := strconv.Atoi(port); err != nil {
		cv.fail("listen_port = %q: want a port number", port)
		return
	}
	addrs := list(host)
	switch {
	case len(addrs) == 0:
		cv.drop("listen_addr", "not set: PgBouncer then listens on its Unix socket only; pgha also listens on 127.0.0.1:"+port)
		addrs = []string{"127.0.0.1"}
	case len(addrs) > 1:
		cv.drop("listen_addr", fmt.Sprintf("%s: pgha's pooler listens on one address; it keeps %s", host, addrs[0]))
	}
	h := addrs[0]
	if h == "*" {
		h = "" // every address, as PgBouncer's *
	}
	cv.c.Listen = joinHostPort(h, port)
}

// droppedSettings are [pgbouncer] keys pgha has no use for, with why.
var droppedSettings = map[string]string{
	"logfile":                     "the daemon logs to stderr (journald under systemd)",
	"pidfile":                     "the daemon does not write a pid file; systemd (or the container) tracks it",
	"syslog":                      "the daemon logs to stderr; route it to syslog with journald",
	"syslog_ident":                "the daemon logs to stderr",
	"syslog_facility":             "the daemon logs to stderr",
	"log_connections":             "logins and session ends are logged at debug level",
	"log_disconnections":          "logins and session ends are logged at debug level",
	"log_pooler_errors":           "the pooler's errors are logged at warn level",
	"log_stats":                   "use SHOW STATS or /metrics instead",
	"verbose":                     "the daemon's log level is set with its own options",
	"user":                        "the daemon's OS user is set by its service unit",
	"conffile":                    "the pooler's settings live in pgha's config",
	"service_name":                "Windows only",
	"job_name":                    "Windows only",
	"unix_socket_mode":            "the socket is made with the daemon's umask",
	"unix_socket_group":           "the socket belongs to the daemon's group",
	"peer_id":                     "pgha has no peering: cancel requests are taken by the pooler that owns the client",
	"so_reuseport":                "one pooler per node listens on the port",
	"listen_backlog":              "Go's listener uses the system's default backlog",
	"pkt_buf":                     "buffers are sized by the pooler (8 kB, pooled)",
	"sbuf_loopcnt":                "each connection has its own goroutine",
	"tcp_defer_accept":            "not used",
	"tcp_socket_buffer":           "the system's defaults are used",
	"tcp_keepalive":               "Go enables TCP keepalive (15 s) on every connection",
	"tcp_keepcnt":                 "Go enables TCP keepalive (15 s) on every connection",
	"tcp_keepidle":                "Go enables TCP keepalive (15 s) on every connection",
	"tcp_keepintvl":               "Go enables TCP keepalive (15 s) on every connection",
	"tcp_user_timeout":            "not supported",
	"dns_max_ttl":                 "pgha routes to the cluster's members by address; no DNS cache",
	"dns_nxdomain_ttl":            "pgha routes to the cluster's members by address; no DNS cache",
	"dns_zone_check_period":       "pgha routes to the cluster's members by address; no DNS cache",
	"resolv_conf":                 "pgha routes to the cluster's members by address; no DNS cache",
	"autodb_idle_timeout":         "pools of databases served by \"*\" stay until their servers time out",
	"server_round_robin":          "idle server connections are reused last-in first-out",
	"server_fast_close":           "a server connection marked for closing is closed when released",
	"disable_pqexec":              "the pooler accepts several statements in one query",
	"application_name_add_host":   "the client's own application_name is passed on as is",
	"suspend_timeout":             "SUSPEND (online restart) does not exist in pgha",
	"query_timeout":               "not supported: use statement_timeout (ALTER ROLE ... SET statement_timeout)",
	"transaction_timeout":         "not supported: use Postgres 17's transaction_timeout or idle_transaction_timeout",
	"cancel_wait_timeout":         "a cancel request is forwarded at once (bounded to 5 s)",
	"query_wait_notify":           "not supported: waiting clients are not told before query_wait_timeout",
	"max_db_client_connections":   "not supported: max_client_conn bounds clients over all databases",
	"max_user_client_connections": "not supported: max_client_conn bounds clients over all users",
	"scram_iterations":            "the pooler stores no passwords it hashes itself",
	"auth_dbname":                 "auth_query runs in the database the client asked for",
	"auth_ident_file":             "peer and ident authentication are not supported",
	"auth_ldap_options":           "LDAP authentication is not supported",
	"server_reset_query_always":   "server_reset_query runs in session mode only",
	"stats_users_prefix":          "not supported",
	"client_tls_ca_file":          "client certificates are not checked (sslmode verify-ca/verify-full are not supported)",
	"client_tls_protocols":        "the pooler accepts TLS 1.2 and later",
	"client_tls_ciphers":          "Go's default cipher suites are used",
	"client_tls13_ciphers":        "Go's default cipher suites are used",
	"client_tls_ecdhcurve":        "Go's default curves are used",
	"client_tls_dheparams":        "Go's TLS does not use DHE",
	"server_tls_sslmode":          "the pooler does not use TLS towards Postgres (see README, Known limits): keep pooler and Postgres on a trusted network",
	"server_tls_ca_file":          "the pooler does not use TLS towards Postgres",
	"server_tls_key_file":         "the pooler does not use TLS towards Postgres",
	"server_tls_cert_file":        "the pooler does not use TLS towards Postgres",
	"server_tls_protocols":        "the pooler does not use TLS towards Postgres",
	"server_tls_ciphers":          "the pooler does not use TLS towards Postgres",
	"server_tls13_ciphers":        "the pooler does not use TLS towards Postgres",
}

// setting carries one [pgbouncer] key.
func (cv *converter) setting(key, v string) {
	c := cv.c
	switch key {
	case "pool_mode":
		c.PoolMode = strings.ToLower(v)
	case "default_pool_size":
		cv.integer(key, v, &c.DefaultPoolSize)
	case "min_pool_size":
		cv.integer(key, v, &c.MinPoolSize)
	case "reserve_pool_size":
		cv.integer(key, v, &c.ReservePoolSize)
	case "reserve_pool_timeout":
		cv.seconds(key, v, &c.ReservePoolTimeout)
	case "max_client_conn":
		cv.integer(key, v, &c.MaxClientConn)
	case "max_db_connections":
		cv.integer(key, v, &c.MaxDBConnections)
	case "max_user_connections":
		cv.integer(key, v, &c.MaxUserConnections)
	case "server_reset_query":
		c.ServerResetQuery = v
	case "server_check_query":
		c.ServerCheckQuery = v
	case "server_check_delay":
		cv.seconds(key, v, &c.ServerCheckDelay)
	case "server_lifetime":
		cv.seconds(key, v, &c.ServerLifetime)
	case "server_idle_timeout":
		cv.seconds(key, v, &c.ServerIdleTimeout)
	case "server_connect_timeout":
		cv.seconds(key, v, &c.ServerConnectTimeout)
	case "server_login_retry":
		cv.seconds(key, v, &c.ServerLoginRetry)
	case "client_login_timeout":
		cv.seconds(key, v, &c.ClientLoginTimeout)
	case "query_wait_timeout":
		cv.seconds(key, v, &c.QueryWaitTimeout)
	case "client_idle_timeout":
		cv.seconds(key, v, &c.ClientIdleTimeout)
	case "idle_transaction_timeout":
		cv.seconds(key, v, &c.IdleTransactionTimeout)
	case "stats_period":
		cv.seconds(key, v, &c.StatsPeriod)
	case "max_packet_size":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			cv.fail("%s = %q: want a number of bytes", key, v)
			return
		}
		c.MaxPacketSize = config.Size(n)
	case "max_prepared_statements":
		cv.integer(key, v, &c.MaxPreparedStatements)
	case "track_extra_parameters":
		c.TrackExtraParameters = list(v)
	case "ignore_startup_parameters":
		c.IgnoreStartupParameters = list(v)
	case "unix_socket_dir":
		c.UnixSocketDir = v
	case "auth_type":
		cv.authType(v)
	case "auth_file":
		c.AuthFile = cv.path(v)
	case "auth_hba_file":
		cv.hbaFile(v)
	case "auth_user":
		c.AuthUser = v
	case "auth_query":
		c.AuthQuery = v
	case "admin_users":
		c.AdminUsers = list(v)
	case "stats_users":
		c.StatsUsers = list(v)
	case "client_tls_sslmode":
		switch m := strings.ToLower(v); m {
		case "disable", "allow", "prefer", "require":
			c.ClientTLS.SSLMode = m
		default:
			cv.fail("client_tls_sslmode = %s: pgha's pooler does not check client certificates (disable, allow, prefer, require); convert by hand", v)
		}
	case "client_tls_key_file":
		c.ClientTLS.KeyFile = cv.path(v)
	case "client_tls_cert_file":
		c.ClientTLS.CertFile = cv.path(v)
	case "server_reset_query_always":
		if on, _ := boolean(v); on {
			cv.drop(key, droppedSettings[key])
		}
	default:
		if why, ok := droppedSettings[key]; ok {
			cv.drop(key, why)
			return
		}
		cv.drop(key, "unknown to pgha's conversion: carry it by hand if it matters")
	}
}

// authType carries auth_type; methods pgha lacks are an error, since
// dropping them would let different clients in.
func (cv *converter) authType(v string) {
	switch m := strings.ToLower(v); m {
	case "md5", "plain", "trust", "scram-sha-256":
		cv.c.AuthType = m
	case "hba":
		// The rules of auth_hba_file decide; md5 for clients no rule
		// names (pgha falls back to auth_type).
		cv.c.AuthType = "md5"
	default:
		cv.fail("auth_type = %s: pgha's pooler supports scram-sha-256, md5, plain, trust and hba rules; convert by hand", v)
	}
}

// hbaFile carries auth_hba_file's host rules into pooler.hba.
func (cv *converter) hbaFile(v string) {
	data, err := os.ReadFile(cv.path(v))
	if err != nil {
		cv.fail("auth_hba_file: %v", err)
		return
	}
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case len(f) == 5 && (f[0] == "host" || f[0] == "hostssl" || f[0] == "hostnossl"):
			switch f[4] {
			case "md5", "scram-sha-256", "plain", "trust", "reject", "password":
				cv.c.HBA = append(cv.c.HBA, strings.Join(f, " "))
				continue
			}
		case f[0] == "local":
			cv.drop(fmt.Sprintf("auth_hba_file line %d", i+1), "local (Unix socket) rules: socket clients get auth_type")
			continue
		}
		cv.drop(fmt.Sprintf("auth_hba_file line %d", i+1), fmt.Sprintf("%q: pgha's rules are host/hostssl/hostnossl DATABASE USER ADDRESS with md5, scram-sha-256, plain, trust or reject", strings.TrimSpace(line)))
	}
}

// connString reads a [databases] or [users] value: key=value pairs,
// values optionally in single quotes (” for a quote).
func connString(s string) (map[string]string, []string, error) {
	out := map[string]string{}
	var order []string
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			break
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, nil, fmt.Errorf("%q: want key=value", s[i:])
		}
		k := strings.ToLower(strings.TrimSpace(s[i : i+eq]))
		i += eq + 1
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for {
				if i >= len(s) {
					return nil, nil, fmt.Errorf("%s: unterminated quote", k)
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						v.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				v.WriteByte(s[i])
				i++
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' {
				v.WriteByte(s[i])
				i++
			}
		}
		out[k] = v.String()
		order = append(order, k)
	}
	return out, order, nil
}

// database carries one [databases] entry.
func (cv *converter) database(name, value string) {
	kvs, order, err := connString(value)
	if err != nil {
		cv.fail("[databases] %s: %v", name, err)
		return
	}
	var d config.PoolerDatabase
	key := "[databases] " + name
	num := func(k, v string) *int {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			cv.fail("%s %s=%q: want a whole number", key, k, v)
			return nil
		}
		return &n
	}
	for _, k := range order {
		v := kvs[k]
		switch k {
		case "dbname":
			d.DBName = v
		case "user":
			d.User = v
		case "password":
			d.Password = v
		case "pool_size":
			d.PoolSize = num(k, v)
		case "min_pool_size":
			d.MinPoolSize = num(k, v)
		case "reserve_pool", "reserve_pool_size":
			d.ReservePoolSize = num(k, v)
		case "pool_mode":
			d.PoolMode = strings.ToLower(v)
		case "max_db_connections":
			if n := num(k, v); n != nil {
				d.MaxDBConnections = *n
			}
		case "server_lifetime":
			cv.seconds(key+" server_lifetime", v, &d.ServerLifetime)
		case "connect_query":
			d.ConnectQuery = v
		case "client_encoding":
			d.ClientEncoding = v
		case "datestyle":
			d.DateStyle = v
		case "timezone":
			d.TimeZone = v
		case "host", "port":
			cv.drop(key+" "+k, "pgha routes every database to the cluster's current primary (pooler.listen) or its replicas (pooler.read_only_listen) itself")
		case "load_balance_hosts":
			cv.drop(key+" "+k, "pgha chooses the hosts: the primary, or the healthy replicas round-robin")
		case "auth_user", "auth_query", "auth_dbname":
			cv.drop(key+" "+k, "one auth_user and auth_query serve every database (pooler.auth_user, pooler.auth_query)")
		case "max_db_client_connections":
			cv.drop(key+" "+k, droppedSettings["max_db_client_connections"])
		case "application_name":
			cv.drop(key+" "+k, "set it in the client, or ALTER DATABASE ... SET application_name")
		default:
			cv.drop(key+" "+k, "unknown to pgha's conversion")
		}
	}
	if cv.c.Databases == nil {
		cv.c.Databases = map[string]config.PoolerDatabase{}
	}
	cv.c.Databases[name] = d
}

// user carries one [users] entry.
func (cv *converter) user(name, value string) {
	kvs, order, err := connString(value)
	if err != nil {
		cv.fail("[users] %s: %v", name, err)
		return
	}
	var u config.PoolerUser
	key := "[users] " + name
	for _, k := range order {
		v := kvs[k]
		n, nerr := strconv.Atoi(v)
		bad := func() { cv.fail("%s %s=%q: want a whole number", key, k, v) }
		switch k {
		case "pool_mode":
			u.PoolMode = strings.ToLower(v)
		case "pool_size":
			if nerr != nil {
				bad()
			}
			u.PoolSize = &n
		case "reserve_pool_size":
			if nerr != nil {
				bad()
			}
			u.ReservePoolSize = &n
		case "max_user_connections":
			if nerr != nil {
				bad()
			}
			u.MaxUserConnections = n
		case "client_idle_timeout":
			cv.seconds(key+" "+k, v, &u.ClientIdleTimeout)
		case "idle_transaction_timeout":
			cv.seconds(key+" "+k, v, &u.IdleTransactionTimeout)
		case "query_timeout", "transaction_timeout", "max_user_client_connections":
			cv.drop(key+" "+k, droppedSettings[k])
		default:
			cv.drop(key+" "+k, "unknown to pgha's conversion")
		}
	}
	if cv.c.Users == nil {
		cv.c.Users = map[string]config.PoolerUser{}
	}
	cv.c.Users[name] = u
}

// checkUserlist refuses a userlist.txt the pooler would refuse (an empty
// password: PgBouncer lets such a user in with any password under some
// auth types; pgha refuses the file), with the pooler's own reading of it.
func (cv *converter) checkUserlist(data []byte) {
	if err := pooler.CheckUserlist(bytes.NewReader(data), "auth_file"); err != nil {
		cv.fail("%s", strings.TrimPrefix(err.Error(), "pooler: "))
	}
}
