package config

import (
	"strings"
	"testing"
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
