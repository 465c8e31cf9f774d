package config

import (
	"strings"
	"time"
)

// Pooler configures the embedded PgBouncer-style pooler. Key names follow
// PgBouncer's pgbouncer.ini so that people's settings carry over; times are
// durations ("30s", or a bare number of seconds as in pgbouncer.ini).
type Pooler struct {
	// Enabled starts the pooler with the daemon.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Listen is the read-write port (writes go to the current primary).
	Listen string `yaml:"listen" json:"listen"`
	// ReadOnlyListen load-balances over healthy replicas; empty disables it.
	ReadOnlyListen string `yaml:"read_only_listen" json:"read_only_listen"`
	// UnixSocketDir, when set, also listens on <dir>/.s.PGSQL.<port>.
	UnixSocketDir string `yaml:"unix_socket_dir" json:"unix_socket_dir"`
	// LocalUnixSocket connects to this node's own Postgres (when it is
	// the primary, or a replica for read_only_listen) through its Unix
	// socket instead of TCP: about 15% more throughput on a busy node.
	// pgha then adds "local all all md5" to pg_hba.conf after the
	// os_user peer line, so a role named like os_user logs in over the
	// socket only when the daemon runs as os_user.
	LocalUnixSocket bool `yaml:"local_unix_socket" json:"local_unix_socket"`

	// PoolMode is session, transaction or statement.
	PoolMode           string   `yaml:"pool_mode" json:"pool_mode"`
	DefaultPoolSize    int      `yaml:"default_pool_size" json:"default_pool_size"`
	MinPoolSize        int      `yaml:"min_pool_size" json:"min_pool_size"`
	ReservePoolSize    int      `yaml:"reserve_pool_size" json:"reserve_pool_size"`
	ReservePoolTimeout Duration `yaml:"reserve_pool_timeout" json:"reserve_pool_timeout"`
	MaxClientConn      int      `yaml:"max_client_conn" json:"max_client_conn"`
	// MaxDBConnections caps server connections per database over all
	// users; 0 means no cap.
	MaxDBConnections int `yaml:"max_db_connections" json:"max_db_connections"`

	// QueryWaitTimeout bounds how long a client waits for a server
	// connection (also across a primary change); 0 waits forever.
	QueryWaitTimeout       Duration `yaml:"query_wait_timeout" json:"query_wait_timeout"`
	ClientIdleTimeout      Duration `yaml:"client_idle_timeout" json:"client_idle_timeout"`
	ServerIdleTimeout      Duration `yaml:"server_idle_timeout" json:"server_idle_timeout"`
	ServerLifetime         Duration `yaml:"server_lifetime" json:"server_lifetime"`
	IdleTransactionTimeout Duration `yaml:"idle_transaction_timeout" json:"idle_transaction_timeout"`
	ServerConnectTimeout   Duration `yaml:"server_connect_timeout" json:"server_connect_timeout"`
	ServerLoginRetry       Duration `yaml:"server_login_retry" json:"server_login_retry"`
	// ServerResetQuery runs when a session-mode client leaves.
	ServerResetQuery string `yaml:"server_reset_query" json:"server_reset_query"`
	// ServerCheckDelay: an idle server connection older than this is
	// checked with ServerCheckQuery before reuse (0 checks always).
	ServerCheckDelay Duration `yaml:"server_check_delay" json:"server_check_delay"`
	ServerCheckQuery string   `yaml:"server_check_query" json:"server_check_query"`

	// MaxPreparedStatements bounds the protocol-level prepared statements
	// kept per server connection in transaction mode; 0 disables the
	// tracking (named statements then only work in session mode).
	MaxPreparedStatements int `yaml:"max_prepared_statements" json:"max_prepared_statements"`
	// MaxClientPreparedStatements bounds the named protocol-level
	// statements one client may hold while they are tracked (transaction
	// and statement mode): the pooler keeps their text for the client's
	// life, so an unbounded number would be unbounded memory. A Parse
	// past the bound ends the client with SQLSTATE 53400. Drivers cache
	// a few hundred (pgx 512, JDBC 256).
	MaxClientPreparedStatements int `yaml:"max_client_prepared_statements" json:"max_client_prepared_statements"`
	// MaxPacketSize is the largest message a client may send; a longer
	// length is refused (SQLSTATE 08P01) before anything is allocated.
	// The default, 256 MiB, fits what real clients send in one message
	// (a Bind with a large bytea or jsonb value, a long generated INSERT,
	// a COPY chunk) while bounding the one message the pooler buffers
	// whole (a named Parse it re-prepares on other servers). PgBouncer's
	// default is 2 GiB, more than Postgres accepts for a single value
	// (1 GB).
	MaxPacketSize Size `yaml:"max_packet_size" json:"max_packet_size"`

	// ClientLoginTimeout closes a client that has not logged in (startup,
	// TLS and authentication) within this time; PgBouncer's key and
	// default (60 s); 0 disables it, as in PgBouncer.
	ClientLoginTimeout Duration `yaml:"client_login_timeout" json:"client_login_timeout"`
	// MaxPendingLogins caps the connections that have not yet logged in;
	// more are refused at once (SQLSTATE 53300) so that clients that
	// never finish a login cannot pile up. Raise it with max_client_conn
	// when many clients connect at the same moment.
	MaxPendingLogins int `yaml:"max_pending_logins" json:"max_pending_logins"`

	// AuthType is scram-sha-256, md5, plain or trust.
	AuthType string `yaml:"auth_type" json:"auth_type"`
	// AuthFile is PgBouncer's userlist.txt: "user" "password" per line,
	// where password is plain text, md5<hex> or a SCRAM-SHA-256 secret.
	AuthFile string `yaml:"auth_file" json:"auth_file"`
	// AuthQuery looks up users missing from AuthFile, run as AuthUser
	// (whose password must be in AuthFile). $1 is the user name.
	AuthQuery string `yaml:"auth_query" json:"auth_query"`
	AuthUser  string `yaml:"auth_user" json:"auth_user"`
	// HBA lists pg_hba-style rules "host DATABASE USER ADDRESS METHOD";
	// empty allows every client with AuthType.
	HBA []string `yaml:"hba" json:"hba"`

	// AdminUsers may run every console command; StatsUsers only SHOW.
	AdminUsers []string `yaml:"admin_users" json:"admin_users"`
	StatsUsers []string `yaml:"stats_users" json:"stats_users"`

	// ClientTLS enables TLS towards clients.
	ClientTLS ClientTLS `yaml:"client_tls" json:"client_tls"`

	// MaxUserConnections caps server connections per user over all
	// databases; 0 means no cap.
	MaxUserConnections int `yaml:"max_user_connections" json:"max_user_connections"`
	// StatsPeriod is how often the averages of SHOW STATS are renewed.
	StatsPeriod Duration `yaml:"stats_period" json:"stats_period"`
	// TrackExtraParameters are settings, beyond client_encoding,
	// DateStyle, TimeZone, standard_conforming_strings and
	// application_name, that a client may send at startup (directly or
	// as -c in options) and that follow it to every server connection
	// it uses (PgBouncer's key and default: IntervalStyle). Settings
	// Postgres does not report back (search_path on Postgres 15) follow
	// the value the client sent at startup.
	TrackExtraParameters []string `yaml:"track_extra_parameters" json:"track_extra_parameters"`
	// IgnoreStartupParameters are startup parameters accepted and
	// dropped; any other unknown one ends the login with PgBouncer's
	// "unsupported startup parameter". "options" here drops unknown
	// settings inside options.
	IgnoreStartupParameters []string `yaml:"ignore_startup_parameters" json:"ignore_startup_parameters"`

	// Databases are PgBouncer's [databases] entries by the name clients
	// use; "*" is the fallback for other names. With none, every
	// database name is accepted as is; with some and no "*", other names
	// are refused ("no such database").
	Databases map[string]PoolerDatabase `yaml:"databases" json:"databases"`
	// Users are PgBouncer's [users] entries.
	Users map[string]PoolerUser `yaml:"users" json:"users"`
}

// PoolerDatabase overrides settings for one database (PgBouncer's
// [databases] keys). A nil number (or "") inherits the global setting.
type PoolerDatabase struct {
	// DBName is the database on Postgres (default: the name clients use).
	DBName string `yaml:"dbname" json:"dbname"`
	// User and Password force one server login for every client of this
	// database (PgBouncer's forced user); Password may be left empty
	// when auth_file has the user.
	User     string `yaml:"user" json:"user"`
	Password string `yaml:"password" json:"password"`

	PoolSize        *int `yaml:"pool_size" json:"pool_size"`
	MinPoolSize     *int `yaml:"min_pool_size" json:"min_pool_size"`
	ReservePoolSize *int `yaml:"reserve_pool_size" json:"reserve_pool_size"`
	// ReservePool is PgBouncer's older name of ReservePoolSize.
	ReservePool *int   `yaml:"reserve_pool" json:"reserve_pool"`
	PoolMode    string `yaml:"pool_mode" json:"pool_mode"`
	// MaxDBConnections 0 inherits max_db_connections.
	MaxDBConnections int `yaml:"max_db_connections" json:"max_db_connections"`
	// ServerLifetime 0 inherits server_lifetime.
	ServerLifetime Duration `yaml:"server_lifetime" json:"server_lifetime"`
	// ConnectQuery runs on each new server connection before use; its
	// errors are logged.
	ConnectQuery string `yaml:"connect_query" json:"connect_query"`
	// ClientEncoding, DateStyle and TimeZone are asked of the server at
	// login, so clients that do not set them get these.
	ClientEncoding string `yaml:"client_encoding" json:"client_encoding"`
	DateStyle      string `yaml:"datestyle" json:"datestyle"`
	TimeZone       string `yaml:"timezone" json:"timezone"`
}

// Reserve is the reserve_pool_size override under either name.
func (d PoolerDatabase) Reserve() *int {
	if d.ReservePoolSize != nil {
		return d.ReservePoolSize
	}
	return d.ReservePool
}

// PoolerUser overrides settings for one user (PgBouncer's [users] keys).
type PoolerUser struct {
	PoolMode        string `yaml:"pool_mode" json:"pool_mode"`
	PoolSize        *int   `yaml:"pool_size" json:"pool_size"`
	ReservePoolSize *int   `yaml:"reserve_pool_size" json:"reserve_pool_size"`
	// MaxUserConnections 0 inherits max_user_connections.
	MaxUserConnections int `yaml:"max_user_connections" json:"max_user_connections"`
	// ClientIdleTimeout and IdleTransactionTimeout, when set, replace
	// the global ones for this user's clients.
	ClientIdleTimeout      Duration `yaml:"client_idle_timeout" json:"client_idle_timeout"`
	IdleTransactionTimeout Duration `yaml:"idle_transaction_timeout" json:"idle_transaction_timeout"`
}

// MaxTrackedParameters bounds the settings carried per client: the five
// PgBouncer always tracks plus track_extra_parameters.
const MaxTrackedParameters = 32

// ClientTLS is the client-facing TLS setup (PgBouncer's client_tls_*).
type ClientTLS struct {
	// SSLMode is disable, allow, prefer or require.
	SSLMode  string `yaml:"sslmode" json:"sslmode"`
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// DefaultPooler returns PgBouncer's defaults where it has them.
func DefaultPooler() Pooler {
	return Pooler{
		Enabled:               true,
		Listen:                "127.0.0.1:6432",
		ReadOnlyListen:        "",
		PoolMode:              "transaction",
		DefaultPoolSize:       20,
		ReservePoolTimeout:    Duration(5 * time.Second),
		MaxClientConn:         100,
		QueryWaitTimeout:      Duration(120 * time.Second),
		ServerIdleTimeout:     Duration(600 * time.Second),
		ServerLifetime:        Duration(3600 * time.Second),
		ServerConnectTimeout:  Duration(15 * time.Second),
		ServerLoginRetry:      Duration(15 * time.Second),
		ServerResetQuery:      "DISCARD ALL",
		ServerCheckDelay:      Duration(30 * time.Second),
		ServerCheckQuery:      "select 1",
		MaxPreparedStatements: 200,
		// Real clients' largest messages; see MaxPacketSize.
		MaxPacketSize:               Size(256 << 20),
		MaxClientPreparedStatements: 1000,
		ClientLoginTimeout:          Duration(60 * time.Second),
		MaxPendingLogins:            256,
		AuthType:                    "scram-sha-256",
		ClientTLS:                   ClientTLS{SSLMode: "disable"},
		StatsPeriod:                 Duration(60 * time.Second),
		TrackExtraParameters:        []string{"IntervalStyle"},
	}
}

// Validate checks the pooler section alone, as pgha's config check does
// (keys named pooler.*); a disabled pooler is not checked.
func (c *Pooler) Validate() error {
	var p problems
	c.validate(&p, "pooler")
	return p.err()
}

func (c *Pooler) validate(p *problems, path string) {
	if !c.Enabled {
		return
	}
	checkHostPort(p, path+".listen", c.Listen, true)
	if c.ReadOnlyListen != "" {
		checkHostPort(p, path+".read_only_listen", c.ReadOnlyListen, true)
	}
	switch c.PoolMode {
	case "session", "transaction", "statement":
	default:
		p.add(path+".pool_mode", "%q is not session, transaction or statement", c.PoolMode)
	}
	if c.DefaultPoolSize < 1 {
		p.add(path+".default_pool_size", "%d: use at least 1", c.DefaultPoolSize)
	}
	if c.MinPoolSize < 0 || c.MinPoolSize > c.DefaultPoolSize {
		p.add(path+".min_pool_size", "%d: use 0 to default_pool_size (%d)", c.MinPoolSize, c.DefaultPoolSize)
	}
	if c.ReservePoolSize < 0 {
		p.add(path+".reserve_pool_size", "%d: must not be negative", c.ReservePoolSize)
	}
	if c.MaxClientConn < 1 {
		p.add(path+".max_client_conn", "%d: use at least 1", c.MaxClientConn)
	}
	if c.MaxDBConnections < 0 {
		p.add(path+".max_db_connections", "%d: must not be negative (0 means no cap)", c.MaxDBConnections)
	}
	if c.MaxPreparedStatements < 0 {
		p.add(path+".max_prepared_statements", "%d: must not be negative (0 disables tracking)", c.MaxPreparedStatements)
	}
	if c.MaxClientPreparedStatements < 1 {
		p.add(path+".max_client_prepared_statements", "%d: use at least 1 (drivers cache a few hundred statements; 1000 is the default)", c.MaxClientPreparedStatements)
	}
	if c.MaxPendingLogins < 1 {
		p.add(path+".max_pending_logins", "%d: use at least 1 (the default is 256)", c.MaxPendingLogins)
	}
	if c.MaxPacketSize < 1024 || c.MaxPacketSize > 2147483647 {
		p.add(path+".max_packet_size", "%d: use 1kB to 2GB", int64(c.MaxPacketSize))
	}
	if c.ServerConnectTimeout == 0 {
		p.add(path+".server_connect_timeout", "0: a server connection attempt must be bounded (e.g. 15s)")
	}
	switch c.AuthType {
	case "scram-sha-256", "md5", "plain", "trust":
	default:
		p.add(path+".auth_type", "%q is not scram-sha-256, md5, plain or trust", c.AuthType)
	}
	if c.AuthQuery != "" && c.AuthUser == "" {
		p.add(path+".auth_user", "missing: auth_query needs an auth_user whose password is in auth_file")
	}
	if c.AuthQuery != "" && !strings.Contains(c.AuthQuery, "$1") {
		p.add(path+".auth_query", "%q does not use $1: the user name is sent as parameter $1 (e.g. SELECT usename, passwd FROM pg_shadow WHERE usename=$1)", c.AuthQuery)
	}
	for i, r := range c.HBA {
		f := strings.Fields(r)
		if len(f) != 5 || (f[0] != "host" && f[0] != "local" && f[0] != "hostssl" && f[0] != "hostnossl") {
			p.add(path+".hba", "rule %d %q: write \"host DATABASE USER ADDRESS METHOD\"", i, r)
		}
	}
	if c.MaxUserConnections < 0 {
		p.add(path+".max_user_connections", "%d: must not be negative (0 means no cap)", c.MaxUserConnections)
	}
	if c.StatsPeriod.D() < time.Second {
		p.add(path+".stats_period", "%v: use at least 1s (PgBouncer's default is 60s)", c.StatsPeriod.D())
	}
	c.validateParams(p, path)
	c.validateDatabases(p, path)
	switch c.ClientTLS.SSLMode {
	case "", "disable":
	case "allow", "prefer", "require":
		if c.ClientTLS.CertFile == "" || c.ClientTLS.KeyFile == "" {
			p.add(path+".client_tls", "sslmode %s needs cert_file and key_file", c.ClientTLS.SSLMode)
		}
	default:
		p.add(path+".client_tls.sslmode", "%q is not disable, allow, prefer or require", c.ClientTLS.SSLMode)
	}
}

// alwaysTracked are the settings PgBouncer carries for every client.
var alwaysTracked = []string{"client_encoding", "DateStyle", "TimeZone", "standard_conforming_strings", "application_name"}

// TrackedParameters is the settings carried per client: the five
// PgBouncer always tracks, then track_extra_parameters, without
// duplicates (names compare without case, as Postgres's do).
func (c *Pooler) TrackedParameters() []string {
	out := append([]string(nil), alwaysTracked...)
next:
	for _, n := range c.TrackExtraParameters {
		for _, o := range out {
			if strings.EqualFold(o, n) {
				continue next
			}
		}
		out = append(out, n)
	}
	return out
}

func (c *Pooler) validateParams(p *problems, path string) {
	for i, n := range c.TrackExtraParameters {
		switch {
		case !gucName(n):
			p.add(path+".track_extra_parameters", "entry %d %q is not a setting name (letters, digits, _ and .)", i, n)
		case strings.EqualFold(n, "options"), strings.EqualFold(n, "user"), strings.EqualFold(n, "database"), strings.EqualFold(n, "replication"):
			p.add(path+".track_extra_parameters", "entry %d %q is a startup parameter, not a setting: only the settings inside options can be tracked", i, n)
		}
	}
	if n := len(c.TrackedParameters()); n > MaxTrackedParameters {
		p.add(path+".track_extra_parameters", "%d settings: at most %d can be tracked with the five always tracked", n-len(alwaysTracked), MaxTrackedParameters-len(alwaysTracked))
	}
}

// gucName reports whether s looks like a Postgres setting name.
func gucName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (c *Pooler) validateDatabases(p *problems, path string) {
	mode := func(key, m string) {
		switch m {
		case "", "session", "transaction", "statement":
		default:
			p.add(key, "%q is not session, transaction or statement", m)
		}
	}
	size := func(key string, v *int, min int) {
		if v != nil && *v < min {
			p.add(key, "%d: use at least %d", *v, min)
		}
	}
	for name, d := range c.Databases {
		key := path + ".databases." + name
		switch {
		case name == "":
			p.add(path+".databases", "an entry has an empty name")
		case strings.EqualFold(name, "pgbouncer") || strings.EqualFold(name, "pgha"):
			p.add(key, "%q is the admin console's name: pick another", name)
		}
		mode(key+".pool_mode", d.PoolMode)
		size(key+".pool_size", d.PoolSize, 1)
		size(key+".min_pool_size", d.MinPoolSize, 0)
		size(key+".reserve_pool_size", d.Reserve(), 0)
		if d.ReservePool != nil && d.ReservePoolSize != nil {
			p.add(key+".reserve_pool", "set together with reserve_pool_size (its newer name): keep one")
		}
		if d.MaxDBConnections < 0 {
			p.add(key+".max_db_connections", "%d: must not be negative (0 inherits max_db_connections)", d.MaxDBConnections)
		}
		if d.Password != "" && d.User == "" {
			p.add(key+".password", "set without user: the password is the forced user's")
		}
		ps := c.DefaultPoolSize
		if d.PoolSize != nil {
			ps = *d.PoolSize
		}
		if d.MinPoolSize != nil && *d.MinPoolSize > ps {
			p.add(key+".min_pool_size", "%d: use 0 to the database's pool_size (%d)", *d.MinPoolSize, ps)
		}
	}
	for name, u := range c.Users {
		key := path + ".users." + name
		if name == "" {
			p.add(path+".users", "an entry has an empty name")
		}
		mode(key+".pool_mode", u.PoolMode)
		size(key+".pool_size", u.PoolSize, 1)
		size(key+".reserve_pool_size", u.ReservePoolSize, 0)
		if u.MaxUserConnections < 0 {
			p.add(key+".max_user_connections", "%d: must not be negative (0 inherits max_user_connections)", u.MaxUserConnections)
		}
	}
}
