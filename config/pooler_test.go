package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestPoolerValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(p *Pooler)
		want []string
	}{
		{"defaults valid", func(p *Pooler) {}, nil},
		{"disabled skips checks", func(p *Pooler) { p.Enabled = false; p.PoolMode = "x" }, nil},
		{"bad mode", func(p *Pooler) { p.PoolMode = "sometimes" }, []string{`pooler.pool_mode: "sometimes" is not session`}},
		{"min above default", func(p *Pooler) { p.MinPoolSize = 50 }, []string{"pooler.min_pool_size: 50: use 0 to default_pool_size (20)"}},
		{"negative reserve", func(p *Pooler) { p.ReservePoolSize = -1 }, []string{"pooler.reserve_pool_size"}},
		{"tiny packet", func(p *Pooler) { p.MaxPacketSize = 10 }, []string{"pooler.max_packet_size: 10: use 1kB to 2GB"}},
		{"bad auth", func(p *Pooler) { p.AuthType = "cert" }, []string{`pooler.auth_type: "cert" is not`}},
		{"auth_query without user", func(p *Pooler) { p.AuthQuery = "select 1" }, []string{"pooler.auth_user: missing"}},
		{"auth_query without $1", func(p *Pooler) { p.AuthUser = "u"; p.AuthQuery = "SELECT usename, passwd FROM pg_shadow" }, []string{"pooler.auth_query", "does not use $1"}},
		{"auth_query with $1", func(p *Pooler) {
			p.AuthUser = "u"
			p.AuthQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"
		}, nil},
		{"no client statements", func(p *Pooler) { p.MaxClientPreparedStatements = 0 }, []string{"pooler.max_client_prepared_statements: 0: use at least 1"}},
		{"no pending logins", func(p *Pooler) { p.MaxPendingLogins = 0 }, []string{"pooler.max_pending_logins: 0: use at least 1"}},
		{"login timeout off", func(p *Pooler) { p.ClientLoginTimeout = 0 }, nil},
		{"bad hba", func(p *Pooler) { p.HBA = []string{"host all all"} }, []string{"pooler.hba: rule 0"}},
		{"tls without cert", func(p *Pooler) { p.ClientTLS.SSLMode = "require" }, []string{"pooler.client_tls: sslmode require needs cert_file"}},
		{"unbounded connect", func(p *Pooler) { p.ServerConnectTimeout = 0 }, []string{"pooler.server_connect_timeout"}},
		{"several", func(p *Pooler) { p.DefaultPoolSize = 0; p.MaxClientConn = 0 }, []string{"pooler.default_pool_size", "pooler.max_client_conn"}},
		{"databases and users", func(p *Pooler) {
			one, zero := 1, 0
			p.Databases = map[string]PoolerDatabase{"app": {DBName: "real", PoolSize: &one, ReservePool: &one, PoolMode: "session"}, "*": {}}
			p.Users = map[string]PoolerUser{"u": {PoolMode: "statement", PoolSize: &one, ReservePoolSize: &zero, MaxUserConnections: 3}}
		}, nil},
		{"database pool_mode", func(p *Pooler) { p.Databases = map[string]PoolerDatabase{"app": {PoolMode: "often"}} }, []string{`pooler.databases.app.pool_mode: "often" is not session`}},
		{"database named like the console", func(p *Pooler) { p.Databases = map[string]PoolerDatabase{"pgbouncer": {}} }, []string{"pooler.databases.pgbouncer", "admin console"}},
		{"reserve under both names", func(p *Pooler) {
			one := 1
			p.Databases = map[string]PoolerDatabase{"app": {ReservePool: &one, ReservePoolSize: &one}}
		}, []string{"pooler.databases.app.reserve_pool: set together with reserve_pool_size"}},
		{"password without user", func(p *Pooler) { p.Databases = map[string]PoolerDatabase{"app": {Password: "x"}} }, []string{"pooler.databases.app.password"}},
		{"database min above its pool", func(p *Pooler) {
			two, three := 2, 3
			p.Databases = map[string]PoolerDatabase{"app": {PoolSize: &two, MinPoolSize: &three}}
		}, []string{"pooler.databases.app.min_pool_size: 3: use 0 to the database's pool_size (2)"}},
		{"zero pool_size", func(p *Pooler) {
			zero := 0
			p.Users = map[string]PoolerUser{"u": {PoolSize: &zero}}
		}, []string{"pooler.users.u.pool_size: 0: use at least 1"}},
		{"negative user cap", func(p *Pooler) { p.Users = map[string]PoolerUser{"u": {MaxUserConnections: -1}} }, []string{"pooler.users.u.max_user_connections"}},
		{"negative global user cap", func(p *Pooler) { p.MaxUserConnections = -1 }, []string{"pooler.max_user_connections"}},
		{"stats_period", func(p *Pooler) { p.StatsPeriod = 0 }, []string{"pooler.stats_period"}},
		{"tracked search_path", func(p *Pooler) { p.TrackExtraParameters = []string{"IntervalStyle", "search_path"} }, nil},
		{"tracked options", func(p *Pooler) { p.TrackExtraParameters = []string{"options"} }, []string{"pooler.track_extra_parameters", "only the settings inside options"}},
		{"tracked junk", func(p *Pooler) { p.TrackExtraParameters = []string{"a b"} }, []string{"pooler.track_extra_parameters", "not a setting name"}},
		{"too many tracked", func(p *Pooler) {
			for i := 0; i < 30; i++ {
				p.TrackExtraParameters = append(p.TrackExtraParameters, fmt.Sprintf("x.s%d", i))
			}
		}, []string{"pooler.track_extra_parameters: 31 settings: at most 27"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultPooler()
			tt.mod(&c)
			var p problems
			c.validate(&p, "pooler")
			got := p.list.Error()
			if len(tt.want) == 0 {
				if len(p.list) != 0 {
					t.Fatalf("want valid, got %v", got)
				}
				return
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in %q", w, got)
				}
			}
		})
	}
}

// TestPoolerDefaults pins the defaults the README documents.
func TestPoolerDefaults(t *testing.T) {
	d := DefaultPooler()
	if d.MaxPacketSize != 256<<20 || d.ClientLoginTimeout.D() != 60*time.Second || d.MaxPendingLogins != 256 || d.MaxClientPreparedStatements != 1000 {
		t.Fatalf("defaults: max_packet_size %d, client_login_timeout %v, max_pending_logins %d, max_client_prepared_statements %d",
			d.MaxPacketSize, d.ClientLoginTimeout.D(), d.MaxPendingLogins, d.MaxClientPreparedStatements)
	}
}

// TestPoolerDatabasesYAML reads PgBouncer-named keys of pooler.databases
// and pooler.users.
func TestPoolerDatabasesYAML(t *testing.T) {
	c := DefaultPooler()
	err := yaml.Unmarshal([]byte(`
databases:
  appdb: {dbname: real, pool_size: 10, pool_mode: session, reserve_pool: 2, min_pool_size: 0, max_db_connections: 30, server_lifetime: 600}
  "*": {}
users:
  batch: {pool_mode: session, max_user_connections: 4, idle_transaction_timeout: 30s}
track_extra_parameters: [IntervalStyle, search_path]
ignore_startup_parameters: [extra_float_digits]
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Databases["appdb"]
	if d.DBName != "real" || *d.PoolSize != 10 || *d.Reserve() != 2 || *d.MinPoolSize != 0 || d.MaxDBConnections != 30 || d.ServerLifetime.D() != 10*time.Minute {
		t.Errorf("appdb: %+v", d)
	}
	if u := c.Users["batch"]; u.PoolMode != "session" || u.MaxUserConnections != 4 || u.IdleTransactionTimeout.D() != 30*time.Second {
		t.Errorf("batch: %+v", u)
	}
	if got := c.TrackedParameters(); strings.Join(got, ",") != "client_encoding,DateStyle,TimeZone,standard_conforming_strings,application_name,IntervalStyle,search_path" {
		t.Errorf("tracked: %v", got)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
