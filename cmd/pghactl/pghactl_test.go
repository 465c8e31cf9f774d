package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/leader"
)

// fakeAPI is a member's REST API that records requests and answers with
// a fixed status per path.
type fakeAPI struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []string
	// answers maps "METHOD /path" to status and body.
	answers map[string]struct {
		code int
		body string
	}
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{answers: map[string]struct {
		code int
		body string
	}{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path
		rec := key + " " + string(b)
		if u, p, ok := r.BasicAuth(); ok {
			rec += " auth=" + u + ":" + p
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, strings.TrimSpace(rec))
		a, ok := f.answers[key]
		f.mu.Unlock()
		if !ok {
			a.code, a.body = 404, "not found"
		}
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) answer(key string, code int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[key] = struct {
		code int
		body string
	}{code, body}
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// testCluster is a three-member cluster "demo" written into a real
// (embedded) etcd in Patroni's key layout, each member's api_url a fake.
type testCluster struct {
	endpoint string
	cli      *clientv3.Client
	apis     map[string]*fakeAPI
}

const mib = 1 << 20

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	eps := pgtest.StartEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	tc := &testCluster{endpoint: eps[0], cli: cli, apis: map[string]*fakeAPI{}}
	prefix := leader.Prefix("/service/", "demo")
	put := func(k string, v any) {
		t.Helper()
		s, ok := v.(string)
		if !ok {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			s = string(b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, prefix+k, s); err != nil {
			t.Fatal(err)
		}
	}
	members := []cluster.Member{
		{Name: "node1", ConnURL: "postgres://127.0.0.1:15431/postgres", State: cluster.StateRunning, Role: cluster.RolePrimary, Timeline: 2, XLogLocation: 100 * mib},
		{Name: "node2", ConnURL: "postgres://127.0.0.1:15432/postgres", State: cluster.StateRunning, Role: cluster.RoleReplica, Timeline: 2, XLogLocation: 100 * mib, ReceiveLSN: 100 * mib, ReplayLSN: 100 * mib, ReplicationState: "streaming"},
		{Name: "node3", ConnURL: "postgres://127.0.0.1:15433/postgres", State: cluster.StateRunning, Role: cluster.RoleReplica, Timeline: 2, XLogLocation: 97 * mib, ReceiveLSN: 100 * mib, ReplayLSN: 97 * mib, ReplicationState: "streaming", Tags: config.Tags{NoFailover: true}},
	}
	for _, m := range members {
		api := newFakeAPI(t)
		tc.apis[m.Name] = api
		m.APIURL = api.srv.URL + "/patroni"
		put("members/"+m.Name, m)
	}
	put("leader", "node1")
	put("initialize", "7301234567890123456")
	cfg := config.DefaultDynamic()
	cfg.PostgreSQL.Parameters = map[string]any{"max_connections": 100}
	put("config", cfg)
	put("status", cluster.Status{Optime: 100 * mib})
	put("history", `[[1,50331648,"no recovery target specified","2026-11-22T01:00:00+00:00","node1"]]`)
	return tc
}

// ctl runs pghactl with args against the cluster and returns its output.
func (tc *testCluster) ctl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.Reader = strings.NewReader(stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"pghactl", "-d", "etcd3://" + strings.TrimPrefix(tc.endpoint, "http://"), "--scope", "demo"}, args...)
	err := app.RunContext(ctx, full)
	return out.String(), err
}

func TestListFormats(t *testing.T) {
	tc := newTestCluster(t)
	out, err := tc.ctl(t, "", "list")
	if err != nil {
		t.Fatal(err)
	}
	// Patroni 4's columns; Tags shows because a member has one.
	want := `+ Cluster: demo (7301234567890123456) -----------+----+-------------+-----+------------+-----+------------------+
| Member | Host            | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags             |
+--------+-----------------+---------+-----------+----+-------------+-----+------------+-----+------------------+
| node1  | 127.0.0.1:15431 | Leader  | running   |  2 |             |     |            |     |                  |
| node2  | 127.0.0.1:15432 | Replica | streaming |  2 |   0/6400000 |   0 |  0/6400000 |   0 |                  |
| node3  | 127.0.0.1:15433 | Replica | streaming |  2 |   0/6400000 |   0 |  0/6100000 |   3 | nofailover: true |
+--------+-----------------+---------+-----------+----+-------------+-----+------------+-----+------------------+
`
	if out != want {
		t.Errorf("list =\n%s\nwant\n%s", out, want)
	}
	out, err = tc.ctl(t, "", "list", "-f", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 3 || rows[0]["Role"] != "Leader" || rows[2]["Replay Lag"] != 3.0 || rows[0]["Cluster"] != "demo" ||
		rows[2]["Tags"].(map[string]any)["nofailover"] != true {
		t.Errorf("list -f json = %s (%v)", out, err)
	}
	out, _ = tc.ctl(t, "", "list", "-f", "tsv")
	if !strings.HasPrefix(out, "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag\tTags\n"+
		"demo\tnode1\t127.0.0.1:15431\tLeader\trunning\t2\t\t\t\t\t\n") || !strings.Contains(out, "\t3\t{nofailover: true}\n") {
		t.Errorf("list -f tsv = %q", out)
	}
	out, _ = tc.ctl(t, "", "list", "-f", "yaml")
	if !strings.Contains(out, "Member: node2") {
		t.Errorf("list -f yaml = %s", out)
	}
	out, _ = tc.ctl(t, "", "topology")
	if !strings.Contains(out, "| + node2 ") || !strings.Contains(out, "| node1   ") {
		t.Errorf("topology = %s", out)
	}
	if _, err := tc.ctl(t, "", "list", "-f", "xml"); err == nil || !strings.Contains(err.Error(), `unknown format "xml"`) {
		t.Errorf("list -f xml err = %v", err)
	}
}

func TestEtcdUnreachableNamesEndpoint(t *testing.T) {
	l := testkit.FreePort(t)
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := "127.0.0.1:" + strconv.Itoa(l)
	err := app.RunContext(ctx, []string{"pghactl", "-d", "etcd3://" + addr, "--scope", "demo", "list"})
	if err == nil || !strings.Contains(err.Error(), "etcd unreachable at "+addr) {
		t.Fatalf("err = %v, want it to name %s", err, addr)
	}
}

func TestSwitchoverAndFailover(t *testing.T) {
	tc := newTestCluster(t)
	tc.apis["node1"].answer("POST /switchover", 200, `Successfully switched over to "node2"`)
	out, err := tc.ctl(t, "", "switchover", "--candidate", "node2", "--force")
	if err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	reqs := tc.apis["node1"].requests()
	if len(reqs) != 1 || !strings.HasPrefix(reqs[0], "POST /switchover ") {
		t.Fatalf("leader API got %v", reqs)
	}
	var body map[string]any
	json.Unmarshal([]byte(strings.TrimPrefix(reqs[0], "POST /switchover ")), &body)
	if body["leader"] != "node1" || body["candidate"] != "node2" || body["scheduled_at"] != nil {
		t.Errorf("switchover body = %v", body)
	}
	if !strings.Contains(out, `Successfully switched over to "node2"`) || !strings.Contains(out, "Current cluster topology") {
		t.Errorf("switchover output = %s", out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"switchover", "--candidate", "node2"}, "stdin is not a terminal"},
		{[]string{"switchover", "--candidate", "node9", "--force"}, `unknown member "node9"`},
		{[]string{"switchover", "--candidate", "node3", "--force"}, "node3 is tagged nofailover"},
		{[]string{"switchover", "--candidate", "node1", "--force"}, "already the leader"},
		{[]string{"switchover", "--leader", "node2", "--force"}, "member node2 is not the leader of cluster demo"},
		{[]string{"failover", "--force"}, "failover could be performed only to a specific candidate"},
		{[]string{"switchover", "--scheduled", "tomorrow", "--force"}, "--scheduled \"tomorrow\""},
	} {
		if out, err := tc.ctl(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q\n%s", c.args, err, c.want, out)
		}
	}
	// The API refuses: the reason reaches the operator.
	tc.apis["node1"].answer("POST /switchover", 412, "switchover is not possible: no good candidates have been found (node2: tagged nofailover)")
	if _, err := tc.ctl(t, "", "switchover", "--force"); err == nil || !strings.Contains(err.Error(), "Switchover failed, details: 412, switchover is not possible") {
		t.Errorf("refused switchover err = %v", err)
	}
	// No eligible candidate at all: say why.
	tc.put(t, "members/node2", cluster.Member{Name: "node2", ConnURL: "postgres://127.0.0.1:15432/postgres", State: cluster.StateRunning, Role: cluster.RoleReplica, Tags: config.Tags{NoFailover: true}})
	if _, err := tc.ctl(t, "", "switchover", "--force"); err == nil || !strings.Contains(err.Error(), "no candidates found to switchover to: node2 is tagged nofailover; node3 is tagged nofailover") {
		t.Errorf("no-candidate err = %v", err)
	}
	// A confirmed switchover on a terminal-less stdin is refused even with answers.
	if _, err := tc.ctl(t, "y\n", "failover", "--candidate", "node2"); err == nil {
		t.Errorf("failover without --force and without a terminal succeeded")
	}
}

func (tc *testCluster) put(t *testing.T, k string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tc.cli.Put(ctx, leader.Prefix("/service/", "demo")+k, string(b)); err != nil {
		t.Fatal(err)
	}
}

func TestMemberCommands(t *testing.T) {
	tc := newTestCluster(t)
	tc.apis["node2"].answer("POST /restart", 200, "restarted successfully")
	tc.apis["node2"].answer("POST /reload", 202, "reload scheduled")
	tc.apis["node2"].answer("POST /reinitialize", 200, "reinitialize started")
	tc.apis["node3"].answer("POST /restart", 503, "restart failed: pg_ctl timed out")
	if out, err := tc.ctl(t, "", "restart", "node2", "--force"); err != nil || !strings.Contains(out, "Success: restart on member node2") {
		t.Errorf("restart node2: %v\n%s", err, out)
	}
	if out, err := tc.ctl(t, "", "restart", "node3", "--force"); err == nil || !strings.Contains(out, "Failed: restart for member node3, status code=503, (restart failed: pg_ctl timed out)") {
		t.Errorf("restart node3: %v\n%s", err, out)
	}
	if out, err := tc.ctl(t, "", "reload", "node2", "--force"); err != nil || !strings.Contains(out, "Reload request received for member node2") {
		t.Errorf("reload node2: %v\n%s", err, out)
	}
	if out, err := tc.ctl(t, "", "reinit", "node2", "--force"); err != nil || !strings.Contains(out, "Success: reinitialize for member node2") {
		t.Errorf("reinit node2: %v\n%s", err, out)
	}
	if got := tc.apis["node2"].requests(); len(got) != 3 || got[2] != `POST /reinitialize {"force":true}` {
		t.Errorf("node2 API got %v", got)
	}
	if _, err := tc.ctl(t, "", "reinit", "node1", "--force"); err == nil || !strings.Contains(err.Error(), "is the leader") {
		t.Errorf("reinit of the leader err = %v", err)
	}
	if _, err := tc.ctl(t, "", "restart", "nodeX", "--force"); err == nil || !strings.Contains(err.Error(), `"nodeX" is neither the configured cluster "demo" (scope from -c or --scope) nor one of its members (node1, node2, node3)`) {
		t.Errorf("restart nodeX err = %v", err)
	}
	if out, err := tc.ctl(t, "", "dsn"); err != nil || out != "host=127.0.0.1 port=15431\n" {
		t.Errorf("dsn = %q %v", out, err)
	}
	if out, err := tc.ctl(t, "", "dsn", "node3"); err != nil || out != "host=127.0.0.1 port=15433\n" {
		t.Errorf("dsn node3 = %q %v", out, err)
	}
	out, err := tc.ctl(t, "", "history")
	if err != nil || !strings.Contains(out, "|  1 | 50331648 | no recovery target specified | 2026-11-22T01:00:00+00:00 | node1      |") {
		t.Errorf("history = %v\n%s", err, out)
	}
}

func TestPauseResume(t *testing.T) {
	tc := newTestCluster(t)
	for _, api := range tc.apis {
		api.answer("PATCH /config", 200, `{"pause":true}`)
		api.answer("GET /patroni", 200, `{"state":"running","pause":true}`)
	}
	out, err := tc.ctl(t, "", "pause", "--wait")
	if err != nil || !strings.Contains(out, "Success: cluster management is paused") || !strings.Contains(out, "waiting until it is recognized by all nodes") {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	if got := tc.apis["node1"].requests(); len(got) < 1 || got[0] != `PATCH /config {"pause":true}` {
		t.Errorf("leader API got %v", got)
	}
	if _, err := tc.ctl(t, "", "resume"); err == nil || !strings.Contains(err.Error(), "is not paused") {
		t.Errorf("resume of an unpaused cluster err = %v", err)
	}
}

func TestShowAndEditConfig(t *testing.T) {
	tc := newTestCluster(t)
	out, err := tc.ctl(t, "", "show-config")
	if err != nil || !strings.Contains(out, "ttl: 10\n") || !strings.Contains(out, "max_connections: 100") || !strings.Contains(out, "maximum_lag_on_failover: 1048576\n") {
		t.Fatalf("show-config: %v\n%s", err, out)
	}
	out, err = tc.ctl(t, "", "edit-config", "-s", "ttl=30", "-p", "work_mem=8MB", "-s", "postgresql.parameters.max_connections=null", "--force")
	if err != nil {
		t.Fatalf("edit-config: %v\n%s", err, out)
	}
	for _, want := range []string{"-ttl: 10\n+ttl: 30\n", "+        work_mem: 8MB", "-        max_connections: 100", "Configuration changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("edit-config output lacks %q:\n%s", want, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := leader.ReadView(ctx, tc.cli, "/service/", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if v.Config.TTL.D() != 30*time.Second || v.Config.PostgreSQL.Parameters["work_mem"] != "8MB" {
		t.Errorf("config in etcd = %+v", v.Config)
	}
	if _, ok := v.Config.PostgreSQL.Parameters["max_connections"]; ok {
		t.Errorf("max_connections not deleted: %v", v.Config.PostgreSQL.Parameters)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"edit-config", "-s", "ttl=1", "--force"}, "refusing the change"},
		{[]string{"edit-config", "-s", "tll=30", "--force"}, `unknown field "tll"`},
		{[]string{"edit-config", "-s", "ttl"}, "write KEY=VALUE"},
		{[]string{"edit-config", "-s", "ttl=20"}, "stdin is not a terminal"},
		{[]string{"edit-config"}, "nothing to change"},
	} {
		if _, err := tc.ctl(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
	if out, err := tc.ctl(t, "", "edit-config", "-s", "ttl=30", "--force"); err != nil || !strings.Contains(out, "Not changed") {
		t.Errorf("no-op edit: %v %s", err, out)
	}
}

func TestConfigFile(t *testing.T) {
	tc := newTestCluster(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "node1.yml")
	yml := "scope: demo\nname: node1\netcd:\n  endpoints: [" + strings.TrimPrefix(tc.endpoint, "http://") + "]\n" +
		"restapi:\n  listen: 127.0.0.1:15531\n  authentication:\n    username: admin\n    password: s3cret\n" +
		"postgresql:\n  listen: 127.0.0.1:15431\n  data_dir: " + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	tc.apis["node2"].answer("POST /reload", 202, "reload scheduled")
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.RunContext(ctx, []string{"pghactl", "-c", path, "reload", "node2", "--force"}); err != nil {
		t.Fatalf("reload with -c: %v\n%s", err, out.String())
	}
	// REST auth from the file is sent (the fake API records the call).
	if got := tc.apis["node2"].requests(); len(got) != 1 || got[0] != "POST /reload  auth=admin:s3cret" {
		t.Errorf("node2 got %v", got)
	}
	if err := app.RunContext(ctx, []string{"pghactl", "-c", filepath.Join(dir, "missing.yml"), "list"}); err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("missing config err = %v", err)
	}
}

func TestListWatchStopsWithContext(t *testing.T) {
	tc := newTestCluster(t)
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := app.RunContext(ctx, []string{"pghactl", "-d", tc.endpoint, "--scope", "demo", "list", "-W"})
	if err != nil {
		t.Fatalf("list -W: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("list -W ran %s after its context ended", d)
	}
	if n := strings.Count(out.String(), "+ Cluster: demo"); n != 2 {
		t.Errorf("list -W printed %d tables in 2.5 s, want 2:\n%s", n, out.String())
	}
}

func TestFlushScheduledSwitchover(t *testing.T) {
	tc := newTestCluster(t)
	if out, err := tc.ctl(t, "", "flush", "switchover", "--force"); err != nil || !strings.Contains(out, "No pending scheduled switchover") {
		t.Errorf("flush without schedule: %v %s", err, out)
	}
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	tc.put(t, "failover", cluster.Failover{Leader: "node1", Member: "node2", ScheduledAt: &at})
	out, _ := tc.ctl(t, "", "list")
	if !strings.Contains(out, "Switchover scheduled at: "+at.Format(time.RFC3339)) || !strings.Contains(out, "to: node2") {
		t.Errorf("list does not show the scheduled switchover:\n%s", out)
	}
	tc.apis["node1"].answer("DELETE /switchover", 200, "scheduled switchover deleted")
	if out, err := tc.ctl(t, "", "flush", "switchover", "--force"); err != nil || !strings.Contains(out, "Success: scheduled switchover deleted") {
		t.Errorf("flush: %v %s", err, out)
	}
	if got := tc.apis["node1"].requests(); len(got) != 1 || got[0] != "DELETE /switchover" {
		t.Errorf("leader API got %v", got)
	}
	// No API answers: the key is deleted in etcd directly.
	for _, api := range tc.apis {
		api.srv.Close()
	}
	if out, err := tc.ctl(t, "", "flush", "switchover", "--force"); err != nil || !strings.Contains(out, "in etcd") {
		t.Errorf("flush without APIs: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if v, err := leader.ReadView(ctx, tc.cli, "/service/", "demo"); err != nil || v.Failover != nil {
		t.Errorf("failover key still there: %+v %v", v.Failover, err)
	}
}
