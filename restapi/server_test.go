package restapi

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testcert"
)

func TestRunTLSAndShutdown(t *testing.T) {
	certFile, keyFile, pool := testcert.Write(t)
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	s, stop := runServer(t, config.RESTAPI{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}, node)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + s.Addr() + "/primary")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /primary over TLS = %d", resp.StatusCode)
	}
	// Plain HTTP on a TLS port is refused.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.Addr() + "/primary"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP answered 200 on the TLS port")
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Errorf("port still open after shutdown")
	}
}

func TestRunBadCertificate(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	s, err := New(config.RESTAPI{Listen: "127.0.0.1:0", CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}, node, &fakeActions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Run(ctx); err == nil {
		t.Fatal("Run with a missing certificate succeeded")
	}
}
