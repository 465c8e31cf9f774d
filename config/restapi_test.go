package config

import (
	"strings"
	"testing"
)

func TestRESTAPIWritesNeedAuthBeyondLoopback(t *testing.T) {
	const open = "restapi.authentication: missing while restapi.listen"
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in some problem line; none: valid
	}{
		{"default loopback", base, nil},
		{"loopback IPv4", base + "restapi:\n  listen: 127.0.0.1:8008\n", nil},
		{"loopback IPv6", base + "restapi:\n  listen: \"[::1]:8008\"\n  connect_address: \"[::1]:8008\"\n", nil},
		{"localhost", base + "restapi:\n  listen: localhost:8008\n", nil},
		{"wildcard without auth", base + "restapi:\n  listen: 0.0.0.0:8008\n  connect_address: 10.0.0.5:8008\n", []string{open + " 0.0.0.0:8008", "restapi.allow_unauthenticated_writes: true"}},
		{"empty host is a wildcard", base + "restapi:\n  listen: \":8008\"\n  connect_address: 10.0.0.5:8008\n", []string{open}},
		{"LAN address without auth", base + "restapi:\n  listen: 10.0.0.5:8008\n", []string{open + " 10.0.0.5:8008"}},
		{"a name is not loopback", base + "restapi:\n  listen: db1.example.com:8008\n", []string{open}},
		{"basic auth", base + "restapi:\n  listen: 10.0.0.5:8008\n  authentication: {username: admin, password: s3cret}\n", nil},
		{"explicit opt-out", base + "restapi:\n  listen: 10.0.0.5:8008\n  allow_unauthenticated_writes: true\n", nil},
		{"client certificates", base + "restapi:\n  listen: 10.0.0.5:8008\n  certfile: /c.pem\n  keyfile: /k.pem\n  cafile: /ca.pem\n  verify_client: required\n", nil},
		{"optional client certificates", base + "restapi:\n  listen: 10.0.0.5:8008\n  certfile: /c.pem\n  keyfile: /k.pem\n  cafile: /ca.pem\n  verify_client: optional\n", nil},
		{"TLS alone is no authentication", base + "restapi:\n  listen: 10.0.0.5:8008\n  certfile: /c.pem\n  keyfile: /k.pem\n", []string{open}},
		{"verify_client without TLS", base + "restapi:\n  verify_client: required\n  cafile: /ca.pem\n", []string{"restapi.verify_client: required checks client certificates during the TLS handshake"}},
		{"verify_client without cafile", base + "restapi:\n  certfile: /c.pem\n  keyfile: /k.pem\n  verify_client: optional\n", []string{"restapi.cafile: missing: verify_client optional"}},
		{"verify_client bad value", base + "restapi:\n  verify_client: always\n", []string{`restapi.verify_client: "always" is not none, optional or required`}},
		{"verify_client none", base + "restapi:\n  verify_client: none\n", nil},
		{"ctl cert without key", base + "ctl:\n  certfile: /client.pem\n", []string{"ctl.certfile: certfile and keyfile must be set together"}},
		{"ctl complete", base + "ctl:\n  cacert: /ca.pem\n  certfile: /client.pem\n  keyfile: /client.key\n  insecure: false\n", nil},
		{"env opt-out", base + "restapi:\n  listen: 10.0.0.5:8008\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env []string
			if tt.name == "env opt-out" {
				env = []string{"PGHA_RESTAPI_ALLOW_UNAUTHENTICATED_WRITES=true"}
			}
			_, err := Parse([]byte(tt.yaml), env)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want problems %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestRESTAPIURL(t *testing.T) {
	r := RESTAPI{ConnectAddress: "10.0.0.5:8008"}
	if got := r.APIURL(); got != "http://10.0.0.5:8008/patroni" {
		t.Errorf("plain api_url = %s", got)
	}
	r.CertFile, r.KeyFile = "/c.pem", "/k.pem"
	if got := r.APIURL(); got != "https://10.0.0.5:8008/patroni" {
		t.Errorf("TLS api_url = %s, want https", got)
	}
}
