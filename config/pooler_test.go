package config

import (
	"strings"
	"testing"
	"time"
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
