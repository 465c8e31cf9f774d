package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testcert"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/restapi"
)

// TestRESTAPIOverTLS: with restapi.certfile set the node publishes an
// https api_url in its member key, and the API answers there to a client
// holding the CA and a client certificate (verify_client: required).
func TestRESTAPIOverTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	c := config.Default()
	c.Scope, c.Name = "tls", "tls1"
	c.PostgreSQL = pgtest.Config(t, "tls1")
	c.Etcd.Embedded = true
	c.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))}
	c.Etcd.DataDir = filepath.Join(t.TempDir(), "etcd")
	c.RESTAPI.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	c.RESTAPI.ConnectAddress = c.RESTAPI.Listen
	c.RESTAPI.CertFile, c.RESTAPI.KeyFile = ca.Server(t)
	c.RESTAPI.CAFile, c.RESTAPI.VerifyClient = ca.CertFile, config.VerifyClientRequired
	c.Ctl.CertFile, c.Ctl.KeyFile = ca.Client(t, "tls1")
	c.Pooler.Enabled = false // this test is about the REST API
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	pgtest.NewNodeFromConfig(t, "tls1", c.PostgreSQL) // teardown

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.New(ctx, c, pgtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddComponents(""); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(90 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	var self cluster.Member
	testkit.Eventually(t, 2*time.Minute, "tls1's member key", func() error {
		v, ok := d.View()
		m, found := v.Member("tls1")
		self = m
		return testkit.Missing(ok && found && m.APIURL != "", fmt.Sprintf("view %+v ok %v", v, ok))
	})
	if want := "https://" + c.RESTAPI.ConnectAddress + "/patroni"; self.APIURL != want {
		t.Fatalf("api_url = %s, want %s", self.APIURL, want)
	}
	tc, err := restapi.ClientTLS(c.Ctl, c.RESTAPI, false)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := hc.Get(self.APIURL)
	if err != nil {
		t.Fatalf("GET %s: %v", self.APIURL, err)
	}
	defer resp.Body.Close()
	var doc struct {
		Patroni struct {
			Scope string `json:"scope"`
		} `json:"patroni"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.Patroni.Scope != "tls" {
		t.Fatalf("GET %s = %d, scope %q, err %v", self.APIURL, resp.StatusCode, doc.Patroni.Scope, err)
	}
	// Without a client certificate the handshake is refused.
	tc.Certificates = nil
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	if resp, err := anon.Get(self.APIURL); err == nil {
		resp.Body.Close()
		t.Fatalf("GET without a client certificate = %d, want a refused handshake", resp.StatusCode)
	}
}
