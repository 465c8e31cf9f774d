package leader

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/testcert"
)

func TestProbePeers(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable) // /patroni answers 503 on a replica's primary check too; body counts
		w.Write([]byte(`{"state":"running","role":"replica","xlog":{"received_location":5000,"replayed_location":4000}}`))
	}))
	defer replica.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	v := cluster.View{Members: []cluster.Member{
		{Name: "b", APIURL: replica.URL + "/patroni", XLogLocation: 100, State: cluster.StateRunning, Role: cluster.RoleReplica},
		{Name: "c", APIURL: slow.URL + "/patroni", XLogLocation: 200, State: cluster.StateRunning, Role: cluster.RoleReplica},
		{Name: "d", XLogLocation: 300, State: cluster.StateStopped, Role: cluster.RoleReplica},
	}}
	start := time.Now()
	got := probePeers(context.Background(), &http.Client{}, v, peersOf(v, "a"))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("probe took %s: the timeout does not bound it", took)
	}
	want := map[string]Peer{
		"b": {Name: "b", Position: 5000, Running: true, InRecovery: true}, // REST answer wins
		"c": {Name: "c", Position: 200, Running: true, InRecovery: true},  // timed out: member key
		"d": {Name: "d", Position: 300, Running: false, InRecovery: true}, // no API URL: member key
	}
	if len(got) != 3 {
		t.Fatalf("got %d peers", len(got))
	}
	for _, p := range got {
		if w := want[p.Name]; p.Position != w.Position || p.Running != w.Running || p.InRecovery != w.InRecovery {
			t.Errorf("peer %s = %+v, want %+v", p.Name, p, w)
		}
	}
}

// TestProbePeersOverTLS: a peer whose API serves https and wants a client
// certificate (verify_client: required) is asked with the CA and client
// certificate the node is configured with; without them the probe falls
// back to the member key.
func TestProbePeersOverTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	serverCert, serverKey := ca.Server(t)
	clientCert, clientKey := ca.Client(t, "node1")
	sc, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	peer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"state":"running","role":"replica","xlog":{"received_location":7000,"replayed_location":6000}}`))
	}))
	peer.TLS = &tls.Config{Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}
	peer.StartTLS()
	t.Cleanup(peer.Close)
	v := cluster.View{Members: []cluster.Member{
		{Name: "b", APIURL: peer.URL + "/patroni", XLogLocation: 100, State: cluster.StateRunning, Role: cluster.RoleReplica},
	}}
	cc, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tc   *tls.Config
		want int64
	}{
		{"CA and client certificate", &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{cc}}, 7000},
		{"no TLS settings", nil, 100},
		{"CA without client certificate", &tls.Config{RootCAs: ca.Pool}, 100},
	} {
		got := probePeers(context.Background(), peerClient(c.tc), v, peersOf(v, "a"))
		if len(got) != 1 || got[0].Position != c.want {
			t.Errorf("%s: peers = %+v, want position %d", c.name, got, c.want)
		}
	}
}
