package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testcert"
	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/restapi"
)

// tlsNode is a restapi.Node and restapi.Actions that records the actions
// pghactl asks for.
type tlsNode struct {
	mu    sync.Mutex
	calls []string
}

func (n *tlsNode) View() (cluster.View, bool) {
	return cluster.View{Scope: "demo", Leader: "node1"}, true
}
func (n *tlsNode) Local(context.Context) restapi.LocalStatus {
	return restapi.LocalStatus{Name: "node2", Scope: "demo", State: cluster.StateRunning, Role: cluster.RoleReplica, Queried: true, ServerVersion: 150004}
}
func (n *tlsNode) record(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, s)
	return nil
}
func (n *tlsNode) RequestFailover(context.Context, cluster.Failover) error {
	return n.record("failover")
}
func (n *tlsNode) ClearFailover(context.Context, int64) error { return n.record("clear") }
func (n *tlsNode) Restart(context.Context) error              { return n.record("restart") }
func (n *tlsNode) Reload(context.Context) error               { return n.record("reload") }
func (n *tlsNode) Reinitialize(context.Context, bool) error   { return n.record("reinit") }
func (n *tlsNode) SetConfig(context.Context, config.DynamicConfig, int64) error {
	return n.record("config")
}
func (n *tlsNode) recorded() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

// TestRESTOverTLSWithClientCertificates: node2's API serves https and
// requires client certificates (verify_client: required); its member key
// publishes an https api_url. pghactl reaches it with the ctl section's
// CA and client certificate, and is refused without them.
func TestRESTOverTLSWithClientCertificates(t *testing.T) {
	tc := newTestCluster(t)
	ca := testcert.NewCA(t)
	serverCert, serverKey := ca.Server(t)
	clientCert, clientKey := ca.Client(t, "operator")

	node := &tlsNode{}
	api, err := restapi.New(config.RESTAPI{Listen: "127.0.0.1:0", CertFile: serverCert, KeyFile: serverKey,
		CAFile: ca.CertFile, VerifyClient: config.VerifyClientRequired}, node, node, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("REST API: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("REST API did not stop")
		}
	})
	apiCfg := config.RESTAPI{ConnectAddress: api.Addr(), CertFile: serverCert}
	m := cluster.Member{Name: "node2", ConnURL: "postgres://127.0.0.1:15432/postgres", APIURL: apiCfg.APIURL(),
		State: cluster.StateRunning, Role: cluster.RoleReplica, Timeline: 2, XLogLocation: 100 * mib, ReceiveLSN: 100 * mib, ReplayLSN: 100 * mib}
	if !strings.HasPrefix(m.APIURL, "https://") {
		t.Fatalf("api_url %s is not https", m.APIURL)
	}
	b, _ := json.Marshal(m)
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if _, err := tc.cli.Put(pctx, leader.Prefix("/service/", "demo")+"members/node2", string(b)); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	writeConfig := func(name, extra string) string {
		path := filepath.Join(dir, name)
		yml := "scope: demo\nname: ctl\netcd:\n  endpoints: [" + strings.TrimPrefix(tc.endpoint, "http://") + "]\n" +
			"postgresql:\n  data_dir: " + filepath.Join(dir, "data") + "\n" + extra
		if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(args ...string) (string, error) {
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := app.RunContext(ctx, append([]string{"pghactl"}, args...))
		return out.String(), err
	}

	withCerts := writeConfig("ctl.yml", "ctl:\n  cacert: "+ca.CertFile+"\n  certfile: "+clientCert+"\n  keyfile: "+clientKey+"\n")
	if out, err := run("-c", withCerts, "reload", "node2", "--force"); err != nil || !strings.Contains(out, "Reload request received for member node2") {
		t.Errorf("reload over TLS with a client certificate: %v\n%s", err, out)
	}
	if out, err := run("-c", withCerts, "restart", "node2", "--force"); err != nil || !strings.Contains(out, "Success: restart on member node2") {
		t.Errorf("restart over TLS with a client certificate: %v\n%s", err, out)
	}
	if got := node.recorded(); len(got) != 2 || got[0] != "reload" || got[1] != "restart" {
		t.Errorf("actions = %v, want reload, restart", got)
	}

	// restapi.cafile alone checks the server but shows no client certificate.
	caOnly := writeConfig("ca-only.yml", "restapi:\n  cafile: "+ca.CertFile+"\n")
	if out, err := run("-c", caOnly, "reload", "node2", "--force"); err == nil || !strings.Contains(out, "Failed: reload for member node2") {
		t.Errorf("reload without a client certificate succeeded: %v\n%s", err, out)
	}
	// No CA: the server's certificate is not trusted.
	noCA := writeConfig("no-ca.yml", "ctl:\n  certfile: "+clientCert+"\n  keyfile: "+clientKey+"\n")
	if out, err := run("-c", noCA, "reload", "node2", "--force"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("reload with an unknown server CA: %v\n%s", err, out)
	}
	// -k skips the server check; the client certificate still gets in.
	if out, err := run("-c", noCA, "-k", "reload", "node2", "--force"); err != nil || !strings.Contains(out, "Reload request received") {
		t.Errorf("reload with -k: %v\n%s", err, out)
	}
	if got := len(node.recorded()); got != 3 {
		t.Errorf("actions carried out = %d, want 3: %v", got, node.recorded())
	}
}
