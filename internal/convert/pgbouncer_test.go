package convert

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"gopkg.in/yaml.v3"
)

func convertFile(t *testing.T, name string, withUserlist bool) (config.Pooler, []Note) {
	t.Helper()
	path := filepath.Join("testdata", name)
	ini, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ul []byte
	if withUserlist {
		if ul, err = os.ReadFile(filepath.Join("testdata", "userlist.txt")); err != nil {
			t.Fatal(err)
		}
	}
	c, dropped, err := FromPgBouncer(ini, ul, path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("%s: the result does not validate: %v", name, err)
	}
	// It also survives pgha's config file format.
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back := config.DefaultPooler()
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("%s: the YAML does not load back: %v\n%s", name, err, out)
	}
	again, _ := yaml.Marshal(back)
	if string(again) != string(out) {
		t.Fatalf("%s: YAML round trip changed the settings:\n%s\nthen\n%s", name, out, again)
	}
	return c, dropped
}

func droppedKeys(ds []Note) map[string]string {
	m := map[string]string{}
	for _, d := range ds {
		if d.Reason == "" {
			panic("a dropped key without a reason: " + d.Key)
		}
		m[d.Key] = d.Reason
	}
	return m
}

// TestFromPgBouncerUpstream converts PgBouncer's own sample config.
func TestFromPgBouncerUpstream(t *testing.T) {
	c, dropped := convertFile(t, "pgbouncer-upstream.ini", false)
	if c.Listen != "localhost:6432" || c.AuthType != "md5" || c.AuthFile != "/etc/pgbouncer/userlist.txt" {
		t.Errorf("listen %q auth_type %q auth_file %q", c.Listen, c.AuthType, c.AuthFile)
	}
	// PgBouncer's defaults where pgha's differ and clients would notice.
	if c.PoolMode != "session" || c.UnixSocketDir != "/tmp" {
		t.Errorf("pool_mode %q unix_socket_dir %q: want PgBouncer's defaults session and /tmp", c.PoolMode, c.UnixSocketDir)
	}
	if !reflect.DeepEqual(c.TrackExtraParameters, []string{"IntervalStyle"}) || len(c.IgnoreStartupParameters) != 0 {
		t.Errorf("track_extra_parameters %v ignore_startup_parameters %v", c.TrackExtraParameters, c.IgnoreStartupParameters)
	}
	d := droppedKeys(dropped)
	for _, k := range []string{"logfile", "pidfile"} {
		if !strings.Contains(d[k], "daemon") {
			t.Errorf("%s: reason %q", k, d[k])
		}
	}
	if len(dropped) != 2 {
		t.Errorf("dropped %v, want logfile and pidfile", dropped)
	}
}

// TestFromPgBouncerProduction converts a production-style config key by key.
func TestFromPgBouncerProduction(t *testing.T) {
	c, dropped := convertFile(t, "production.ini", true)
	dir := "testdata"
	checks := []struct {
		key       string
		got, want any
	}{
		{"listen", c.Listen, "0.0.0.0:6432"},
		{"unix_socket_dir", c.UnixSocketDir, "/var/run/postgresql"},
		{"auth_type", c.AuthType, "scram-sha-256"},
		{"auth_file", c.AuthFile, filepath.Join(dir, "userlist.txt")},
		{"auth_user", c.AuthUser, "pgbouncer_auth"},
		{"auth_query", c.AuthQuery, "SELECT usename, passwd FROM pgbouncer.get_auth($1)"},
		{"admin_users", c.AdminUsers, []string{"pgbouncer_admin", "ops"}},
		{"stats_users", c.StatsUsers, []string{"monitoring"}},
		{"pool_mode", c.PoolMode, "transaction"},
		{"default_pool_size", c.DefaultPoolSize, 25},
		{"reserve_pool_size", c.ReservePoolSize, 5},
		{"reserve_pool_timeout", c.ReservePoolTimeout.D(), 3 * time.Second},
		{"max_client_conn (from the %include)", c.MaxClientConn, 2500},
		{"max_db_connections", c.MaxDBConnections, 100},
		{"max_user_connections", c.MaxUserConnections, 90},
		{"max_prepared_statements", c.MaxPreparedStatements, 500},
		{"server_reset_query", c.ServerResetQuery, "DISCARD ALL"},
		{"server_check_query", c.ServerCheckQuery, "SELECT 1"},
		{"server_check_delay", c.ServerCheckDelay.D(), 10 * time.Second},
		{"server_lifetime", c.ServerLifetime.D(), 30 * time.Minute},
		{"server_idle_timeout", c.ServerIdleTimeout.D(), 5 * time.Minute},
		{"server_connect_timeout", c.ServerConnectTimeout.D(), 5 * time.Second},
		{"server_login_retry", c.ServerLoginRetry.D(), 2500 * time.Millisecond},
		{"client_login_timeout", c.ClientLoginTimeout.D(), 30 * time.Second},
		{"query_wait_timeout", c.QueryWaitTimeout.D(), time.Minute},
		{"idle_transaction_timeout", c.IdleTransactionTimeout.D(), 2 * time.Minute},
		{"max_packet_size", int64(c.MaxPacketSize), int64(64 << 20)},
		{"stats_period", c.StatsPeriod.D(), 30 * time.Second},
		{"track_extra_parameters", c.TrackExtraParameters, []string{"IntervalStyle", "search_path"}},
		{"ignore_startup_parameters", c.IgnoreStartupParameters, []string{"extra_float_digits", "options"}},
		{"client_tls", c.ClientTLS, config.ClientTLS{SSLMode: "prefer", KeyFile: "/etc/pgbouncer/server.key", CertFile: "/etc/pgbouncer/server.crt"}},
		{"hba", c.HBA, []string{"host all monitoring 10.0.0.0/8 scram-sha-256", "hostssl app all 0.0.0.0/0 scram-sha-256", "host all all 0.0.0.0/0 reject"}},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s: got %#v, want %#v", ch.key, ch.got, ch.want)
		}
	}
	five, forty, ten, four, two := 5, 40, 10, 4, 2
	wantDBs := map[string]config.PoolerDatabase{
		"app":        {DBName: "app_production", PoolSize: &forty, MinPoolSize: &five, ReservePoolSize: &five, MaxDBConnections: 60},
		"reports":    {DBName: "app_production", PoolMode: "session", PoolSize: &ten, TimeZone: "UTC", DateStyle: "ISO, DMY", ConnectQuery: "SET statement_timeout = 600000"},
		"legacy-svc": {DBName: "legacy", User: "legacy_app", Password: "s3cret", ClientEncoding: "UTF8", ServerLifetime: config.Duration(10 * time.Minute)},
		"app_ro":     {DBName: "app_production"},
		"*":          {},
	}
	if !reflect.DeepEqual(c.Databases, wantDBs) {
		t.Errorf("databases:\n got %+v\nwant %+v", c.Databases, wantDBs)
	}
	wantUsers := map[string]config.PoolerUser{
		"batch": {PoolMode: "session", MaxUserConnections: 8, PoolSize: &four},
		"etl":   {PoolMode: "transaction", ReservePoolSize: &two, IdleTransactionTimeout: config.Duration(30 * time.Second)},
	}
	if !reflect.DeepEqual(c.Users, wantUsers) {
		t.Errorf("users:\n got %+v\nwant %+v", c.Users, wantUsers)
	}
	d := droppedKeys(dropped)
	for key, reasonHas := range map[string]string{
		"[databases] app host":                  "primary",
		"[databases] app port":                  "primary",
		"[databases] app_ro load_balance_hosts": "replicas",
		"[databases] app_ro auth_user":          "auth_user",
		"[users] etl query_timeout":             "statement_timeout",
		"logfile":                               "stderr",
		"pidfile":                               "pid file",
		"user":                                  "service unit",
		"server_tls_sslmode":                    "TLS towards Postgres",
		"client_tls_ca_file":                    "client certificates",
		"client_tls_protocols":                  "TLS 1.2",
		"query_timeout":                         "statement_timeout",
		"tcp_keepalive":                         "keepalive",
		"dns_max_ttl":                           "DNS",
		"so_reuseport":                          "one pooler",
		"application_name_add_host":             "application_name",
		"verbose":                               "log level",
		"auth_hba_file line 2":                  "local",
		"auth_hba_file line 6":                  "cert",
		"log_connections":                       "debug",
	} {
		if !strings.Contains(d[key], reasonHas) {
			t.Errorf("dropped %q: reason %q, want it to mention %q", key, d[key], reasonHas)
		}
	}
}

// TestFromPgBouncerRefuses: settings whose loss would change who gets
// in, and bad values, are errors naming the key.
func TestFromPgBouncerRefuses(t *testing.T) {
	for _, tc := range []struct{ ini, userlist, want string }{
		{"[pgbouncer]\nauth_type = cert\n", "", "auth_type = cert"},
		{"[pgbouncer]\nauth_type = pam\n", "", "auth_type = pam"},
		{"[pgbouncer]\nclient_tls_sslmode = verify-full\n", "", "client_tls_sslmode = verify-full"},
		{"[pgbouncer]\ndefault_pool_size = lots\n", "", "default_pool_size"},
		{"[pgbouncer]\nquery_wait_timeout = 2min\n", "", "query_wait_timeout"},
		{"[databases]\nx = pool_size=-1\n", "", "[databases] x pool_size"},
		{"[databases]\nx = connect_query='SELECT 1\n", "", "unterminated"},
		{"[pgbouncer]\npool_mode = sometimes\n", "", "pooler.pool_mode"},
		{"[pgbouncer]\nauth_file = u.txt\n", "\"alice\" \"\"\n", "empty password"},
		{"listen_port = 6432\n", "", "outside a section"},
	} {
		_, _, err := FromPgBouncer([]byte(tc.ini), []byte(tc.userlist), "/etc/pgbouncer/pgbouncer.ini")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want an error naming %q, got %v", tc.ini, tc.want, err)
		}
	}
}
