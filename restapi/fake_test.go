package restapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// fakeNode is a Node whose answers the test sets.
type fakeNode struct {
	mu    sync.Mutex
	view  cluster.View
	ok    bool
	local LocalStatus
	// afterFailover, when set, is applied to the view on RequestFailover.
	afterFailover func(v *cluster.View)
}

func (n *fakeNode) View() (cluster.View, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.view, n.ok
}

func (n *fakeNode) Local(ctx context.Context) LocalStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.local
}

// fakeActions records calls and returns the configured error.
type fakeActions struct {
	node *fakeNode
	mu   sync.Mutex
	err  error
	// calls lists what was called, e.g. "failover leader=node1 member=node2".
	calls     []string
	failovers []cluster.Failover
	config    *config.DynamicConfig
	configRev int64
	force     bool
}

func (a *fakeActions) record(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, s)
	return a.err
}

func (a *fakeActions) RequestFailover(ctx context.Context, f cluster.Failover) error {
	if err := a.record("failover"); err != nil {
		return err
	}
	a.mu.Lock()
	a.failovers = append(a.failovers, f)
	a.mu.Unlock()
	if a.node != nil {
		a.node.mu.Lock()
		fc := f
		a.node.view.Failover = &fc
		if a.node.afterFailover != nil {
			// The change lands shortly after, as an HA loop would make it.
			fn := a.node.afterFailover
			time.AfterFunc(50*time.Millisecond, func() {
				a.node.mu.Lock()
				fn(&a.node.view)
				a.node.view.ReadAt = time.Now() // a snapshot read after the request
				a.node.mu.Unlock()
			})
		}
		a.node.mu.Unlock()
	}
	return nil
}

func (a *fakeActions) ClearFailover(ctx context.Context, rev int64) error {
	return a.record("clear")
}
func (a *fakeActions) Restart(ctx context.Context) error { return a.record("restart") }
func (a *fakeActions) Reload(ctx context.Context) error  { return a.record("reload") }
func (a *fakeActions) Reinitialize(ctx context.Context, force bool) error {
	a.mu.Lock()
	a.force = force
	a.mu.Unlock()
	return a.record("reinit")
}
func (a *fakeActions) SetConfig(ctx context.Context, c config.DynamicConfig, rev int64) error {
	if err := a.record("config"); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.config, a.configRev = &c, rev
	return nil
}

func (a *fakeActions) called() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

const mb = 1 << 20

// baseView is a healthy three-node cluster led by node1 at optime 100 MiB.
func baseView() cluster.View {
	cfg := config.DefaultDynamic()
	return cluster.View{
		Scope:  "demo",
		Leader: "node1",
		Members: []cluster.Member{
			{Name: "node1", ConnURL: "postgres://127.0.0.1:15431/postgres", APIURL: "http://127.0.0.1:15531/patroni", State: cluster.StateRunning, Role: cluster.RolePrimary, Timeline: 2, XLogLocation: 100 * mb},
			{Name: "node2", ConnURL: "postgres://127.0.0.1:15432/postgres", APIURL: "http://127.0.0.1:15532/patroni", State: cluster.StateRunning, Role: cluster.RoleReplica, Timeline: 2, XLogLocation: 100 * mb, ReceiveLSN: 100 * mb, ReplayLSN: 100 * mb, ReplicationState: "streaming"},
			{Name: "node3", ConnURL: "postgres://127.0.0.1:15433/postgres", APIURL: "http://127.0.0.1:15533/patroni", State: cluster.StateRunning, Role: cluster.RoleReplica, Timeline: 2, XLogLocation: 99 * mb, ReceiveLSN: 100 * mb, ReplayLSN: 99 * mb, ReplicationState: "streaming"},
		},
		Config:         cfg,
		ConfigRevision: 7,
		Initialize:     "7301234567890123456",
		Status:         cluster.Status{Optime: 100 * mb},
		History: []cluster.HistoryEntry{{Timeline: 1, LSN: 50 * mb, Reason: "no recovery target specified",
			Timestamp: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC), NewLeader: "node1"}},
		ReadAt: time.Now(),
	}
}

func primaryStatus() LocalStatus {
	return LocalStatus{Name: "node1", Scope: "demo", Version: "0.1.0", State: cluster.StateRunning, Role: cluster.RolePrimary,
		Queried: true, PostmasterStartTime: time.Now().Add(-time.Hour), ServerVersion: 150004, Timeline: 2,
		XLogLocation: 100 * mb, IsLeader: true, SystemIdentifier: "7301234567890123456",
		Replication: []ReplicationRow{{Usename: "replicator", ApplicationName: "node2", ClientAddr: "127.0.0.1", State: "streaming", SyncState: "async"}},
		DCSLastSeen: time.Now(), LastLoop: time.Now()}
}

func replicaStatus(replayed int64) LocalStatus {
	return LocalStatus{Name: "node2", Scope: "demo", Version: "0.1.0", State: cluster.StateRunning, Role: cluster.RoleReplica,
		Queried: true, PostmasterStartTime: time.Now().Add(-time.Hour), ServerVersion: 150004, Timeline: 2,
		ReceivedLocation: replayed, ReplayedLocation: replayed, LatestEndLSN: replayed, ReplicationState: "streaming",
		SystemIdentifier: "7301234567890123456", DCSLastSeen: time.Now(), LastLoop: time.Now()}
}

// newTestServer serves the API over a real socket (httptest).
func newTestServer(t testing.TB, cfg config.RESTAPI, node *fakeNode) (*Server, *fakeActions, *httptest.Server) {
	t.Helper()
	acts := &fakeActions{node: node}
	s, err := New(cfg, node, acts, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.PollInterval = 10 * time.Millisecond
	s.PollTimeout = 2 * time.Second
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, acts, ts
}

// do sends one request and returns status and body.
func do(t testing.TB, ts *httptest.Server, method, path, body string, auth ...string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// runServer starts a real Server (Listen + Run) on cfg and returns it with
// stop, which ends Run and returns its error; t.Cleanup calls stop too.
func runServer(t testing.TB, cfg config.RESTAPI, node *fakeNode) (*Server, func() error) {
	t.Helper()
	s, err := New(cfg, node, &fakeActions{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return within 10s of its context ending")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("REST API on %s: %v", s.Addr(), err)
		}
	})
	return s, stop
}
