package leader_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testcert"
	"github.com/pgha/pgha/leader"
)

func TestClientConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    config.Etcd
		want []string
		err  string
		tls  bool
	}{
		{"host:port", config.Etcd{Endpoints: []string{"127.0.0.1:2379", "10.0.0.2:2379/"}}, []string{"http://127.0.0.1:2379", "http://10.0.0.2:2379"}, "", false},
		{"urls kept", config.Etcd{Endpoints: []string{"http://a:1", "http://b:2"}}, []string{"http://a:1", "http://b:2"}, "", false},
		{"https by URL", config.Etcd{Endpoints: []string{"https://a:1", "b:2"}}, []string{"https://a:1", "https://b:2"}, "", true},
		{"https by CA", config.Etcd{Endpoints: []string{"a:1"}, CACert: "/nonexistent/ca.pem"}, nil, "etcd.cacert", true},
		{"http with TLS", config.Etcd{Endpoints: []string{"http://a:1"}, Cert: "c", Key: "k"}, nil, "plain HTTP while TLS is in use", true},
		{"cert without key", config.Etcd{Endpoints: []string{"https://a:1"}, Cert: "c"}, nil, "etcd.cert and etcd.key must be set together", true},
		{"none", config.Etcd{}, nil, "no etcd endpoints", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := leader.ClientConfig(tc.e)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Endpoints, tc.want) || (cfg.TLS != nil) != tc.tls || cfg.DialTimeout != leader.DefaultDialTimeout {
				t.Fatalf("endpoints %v tls %v dial %s", cfg.Endpoints, cfg.TLS != nil, cfg.DialTimeout)
			}
		})
	}
}

// TestClientTLS: an etcd that takes clients over TLS only, with client
// certificates, is reached with etcd.cacert/cert/key (endpoints with or
// without a scheme), and refuses a client without the certificate.
func TestClientTLS(t *testing.T) {
	cert, key, _ := testcert.Write(t)
	urls := pgtest.StartEtcdWith(t, pgtest.EtcdOptions{CertFile: cert, KeyFile: key, CAFile: cert})
	hostPort := strings.TrimPrefix(urls[0], "https://")
	for _, ep := range []string{urls[0], hostPort} {
		e := config.Etcd{Endpoints: []string{ep}, CACert: cert, Cert: cert, Key: key, DialTimeout: config.Duration(5 * time.Second)}
		roundTrip(t, e)
	}
	// Without a client certificate etcd refuses the handshake.
	e := config.Etcd{Endpoints: urls, CACert: cert, DialTimeout: config.Duration(2 * time.Second)}
	if err := tryPut(e); err == nil {
		t.Fatal("etcd took a client without a certificate")
	}
}

// TestClientAuth: an etcd with authentication on is reached with
// etcd.username and etcd.password, and refuses a wrong password.
func TestClientAuth(t *testing.T) {
	urls := pgtest.StartEtcdWith(t, pgtest.EtcdOptions{RootPassword: "s3cret 'pw'"})
	roundTrip(t, config.Etcd{Endpoints: urls, Username: "root", Password: "s3cret 'pw'"})
	if err := tryPut(config.Etcd{Endpoints: urls}); err == nil {
		t.Fatal("etcd took a write without credentials")
	}
	if err := tryPut(config.Etcd{Endpoints: urls, Username: "root", Password: "wrong"}); err == nil {
		t.Fatal("etcd took a wrong password")
	}
}

func roundTrip(t *testing.T, e config.Etcd) {
	t.Helper()
	if err := tryPut(e); err != nil {
		t.Fatalf("%v: %v", e.Endpoints, err)
	}
}

func tryPut(e config.Etcd) error {
	cli, err := leader.NewClient(e)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/pgha-client-test", "x"); err != nil {
		return err
	}
	_, err = cli.Get(ctx, "/pgha-client-test")
	return err
}
