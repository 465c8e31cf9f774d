package restapi

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// leaderMovesTo makes the fake HA loop hand the leader key to name.
func leaderMovesTo(name string) func(v *cluster.View) {
	return func(v *cluster.View) {
		v.Leader = name
		v.Failover = nil
	}
}

func TestSwitchoverFailoverStatusCodes(t *testing.T) {
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	big := `{"leader":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	cases := []struct {
		name, method, path, body string
		setup                    func(n *fakeNode, a *fakeActions)
		want                     int
		wantBody                 string
	}{
		{"switchover to named candidate", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) { n.afterFailover = leaderMovesTo("node2") }, 200, `Successfully switched over to "node2"`},
		{"switchover to any healthy replica", "POST", "/switchover", `{"leader":"node1"}`,
			func(n *fakeNode, a *fakeActions) { n.afterFailover = leaderMovesTo("node3") }, 200, `Successfully switched over to "node3"`},
		{"switchover lands elsewhere", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) { n.afterFailover = leaderMovesTo("node3") }, 200, `Switched over to "node3" instead of "node2"`},
		{"switchover rejected by the loop", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) { n.afterFailover = func(v *cluster.View) { v.Failover = nil } }, 503, "Switchover failed"},
		{"switchover outcome unknown", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			nil, 503, "Switchover status unknown"},
		{"switchover without leader", "POST", "/switchover", `{"candidate":"node2"}`, nil, 400, "Switchover could be performed only from a specific leader"},
		{"switchover wrong leader", "POST", "/switchover", `{"leader":"node2","candidate":"node3"}`, nil, 412, "leader name does not match"},
		{"switchover unknown candidate", "POST", "/switchover", `{"leader":"node1","candidate":"node9"}`, nil, 412, "candidate does not exists"},
		{"switchover to itself", "POST", "/switchover", `{"leader":"node1","candidate":"node1"}`, nil, 400, "Switchover target and source are the same"},
		{"switchover to nofailover", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) { n.view.Members[1].Tags.NoFailover = true }, 412, "node2: tagged nofailover"},
		{"switchover no healthy replica", "POST", "/switchover", `{"leader":"node1"}`,
			func(n *fakeNode, a *fakeActions) {
				n.view.Members[1].State = cluster.StateStopped
				n.view.Members[2].ReplayLSN, n.view.Members[2].ReceiveLSN, n.view.Members[2].XLogLocation = 10*mb, 10*mb, 10*mb
			}, 412, "no good candidates have been found (node2: state is \"stopped\", not running; node3: lags"},
		{"switchover sync mode non-sync candidate", "POST", "/switchover", `{"leader":"node1","candidate":"node3"}`,
			func(n *fakeNode, a *fakeActions) {
				n.view.Config.SynchronousMode = true
				n.view.Sync = &cluster.Sync{Leader: "node1", SyncStandby: "node2"}
			}, 412, "candidate name does not match with sync_standby"},
		{"switchover paused without candidate", "POST", "/switchover", `{"leader":"node1"}`,
			func(n *fakeNode, a *fakeActions) { n.view.Config.Pause = true }, 400, "Switchover is possible only to a specific candidate in a paused state"},
		{"scheduled switchover", "POST", "/switchover", `{"leader":"node1","candidate":"node2","scheduled_at":"` + future + `"}`, nil, 202, "Switchover scheduled"},
		{"scheduled in the past", "POST", "/switchover", `{"leader":"node1","scheduled_at":"` + past + `"}`, nil, 422, "Cannot schedule switchover in the past"},
		{"scheduled without timezone", "POST", "/switchover", `{"leader":"node1","scheduled_at":"2030-01-01T10:00"}`, nil, 400, "Timezone information is mandatory"},
		{"scheduled garbage", "POST", "/switchover", `{"leader":"node1","scheduled_at":"tomorrow"}`, nil, 422, "Unable to parse scheduled timestamp"},
		{"scheduled while paused", "POST", "/switchover", `{"leader":"node1","candidate":"node2","scheduled_at":"` + future + `"}`,
			func(n *fakeNode, a *fakeActions) { n.view.Config.Pause = true }, 400, "Can't schedule switchover in the paused state"},
		{"etcd write fails", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) { a.err = errors.New("etcdserver: request timed out") }, 503, "failed to write failover key"},
		{"etcd unreachable", "POST", "/switchover", `{"leader":"node1","candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) { n.ok = false }, 503, "etcd is unreachable"},
		{"failover needs candidate", "POST", "/failover", `{"leader":""}`, nil, 400, "Failover could be performed only to a specific candidate"},
		{"failover cannot be scheduled", "POST", "/failover", `{"candidate":"node2","scheduled_at":"` + future + `"}`, nil, 400, "Failover can't be scheduled"},
		{"failover without leader", "POST", "/failover", `{"candidate":"node2"}`,
			func(n *fakeNode, a *fakeActions) {
				n.view.Leader = ""
				n.afterFailover = leaderMovesTo("node2")
			}, 200, `Successfully failed over to "node2"`},
		{"empty body", "POST", "/switchover", ``, nil, 400, "empty body"},
		{"empty object", "POST", "/failover", `{}`, nil, 400, "empty JSON object"},
		{"not JSON", "POST", "/switchover", `leader=node1`, nil, 400, "want a JSON object"},
		{"JSON array", "POST", "/switchover", `["node1"]`, nil, 400, "want a JSON object"},
		{"wrong field type", "POST", "/switchover", `{"leader":1}`, nil, 400, `"leader" must be a string`},
		{"body over 1 MiB", "POST", "/switchover", big, nil, 413, "larger than 1048576 bytes"},
		{"cancel scheduled switchover", "DELETE", "/switchover", ``,
			func(n *fakeNode, a *fakeActions) {
				at := time.Now().Add(time.Hour)
				n.view.Failover = &cluster.Failover{Leader: "node1", ScheduledAt: &at, Revision: 9}
			}, 200, "scheduled switchover deleted"},
		{"cancel without schedule", "DELETE", "/switchover", ``, nil, 404, "no switchover is scheduled"},
		{"restart", "POST", "/restart", ``, nil, 200, "restarted successfully"},
		{"restart with matching role", "POST", "/restart", `{"role":"primary","restart_pending":false}`, nil, 200, "restarted successfully"},
		{"restart other role", "POST", "/restart", `{"role":"replica"}`, nil, 503, "restart conditions are not satisfied"},
		{"restart when not pending", "POST", "/restart", `{"restart_pending":true}`, nil, 503, "restart conditions are not satisfied"},
		{"restart bad role", "POST", "/restart", `{"role":"boss"}`, nil, 400, "PostgreSQL role should be"},
		{"restart unknown filter", "POST", "/restart", `{"color":"red"}`, nil, 400, "Unknown filter for the scheduled restart: color"},
		{"restart bad timeout", "POST", "/restart", `{"timeout":-1}`, nil, 400, "Timeout should be a positive number"},
		{"restart schedule", "POST", "/restart", `{"schedule":"2030-01-01T00:00:00Z"}`, nil, 400, "does not schedule restarts"},
		{"restart schedule paused", "POST", "/restart", `{"schedule":"2030-01-01T00:00:00Z"}`,
			func(n *fakeNode, a *fakeActions) { n.view.Config.Pause = true }, 500, "Can't schedule restart in the paused state"},
		{"restart fails", "POST", "/restart", ``, func(n *fakeNode, a *fakeActions) { a.err = errors.New("pg_ctl: timed out") }, 503, "restart failed: pg_ctl: timed out"},
		{"restart not JSON", "POST", "/restart", `{`, nil, 400, "want a JSON object"},
		{"reload", "POST", "/reload", ``, nil, 202, "reload scheduled"},
		{"delete scheduled restart", "DELETE", "/restart", ``, nil, 404, "no restarts are scheduled"},
		{"reload fails", "POST", "/reload", ``, func(n *fakeNode, a *fakeActions) { a.err = fmt.Errorf("config: %w", ErrBadRequest) }, 400, "reload failed"},
		{"reinitialize", "POST", "/reinitialize", `{"force":true}`, nil, 200, "reinitialize started"},
		{"reinitialize refused", "POST", "/reinitialize", ``,
			func(n *fakeNode, a *fakeActions) {
				a.err = fmt.Errorf("I am the leader, can not reinitialize: %w", ErrNotPossible)
			}, 503, "I am the leader"},
		{"reinitialize bad force", "POST", "/reinitialize", `{"force":[1]}`, nil, 400, `"force" must be true or false`},
		{"unknown POST path", "POST", "/frobnicate", `{}`, nil, 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
			s, acts, ts := newTestServer(t, config.RESTAPI{}, node)
			s.PollTimeout = 500 * time.Millisecond
			if c.setup != nil {
				c.setup(node, acts)
			}
			code, body, _ := do(t, ts, c.method, c.path, c.body)
			if code != c.want || !strings.Contains(body, c.wantBody) {
				t.Errorf("%s %s %s = %d %q, want %d containing %q", c.method, c.path, c.body[:min(len(c.body), 80)], code, body, c.want, c.wantBody)
			}
		})
	}
}

func TestSwitchoverWritesFailoverKey(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	node.afterFailover = leaderMovesTo("node2")
	s, acts, ts := newTestServer(t, config.RESTAPI{}, node)
	if code, body, _ := do(t, ts, "POST", "/switchover", `{"leader":"node1","member":"node2"}`); code != 200 {
		t.Fatalf("switchover = %d %s", code, body)
	}
	if len(acts.failovers) != 1 || acts.failovers[0].Leader != "node1" || acts.failovers[0].Member != "node2" || acts.failovers[0].ScheduledAt != nil {
		t.Fatalf("failover key = %+v", acts.failovers)
	}
	if got := testutilCounter(t, s.Metrics().Switchovers); got != 1 {
		t.Errorf("pgha_switchovers_total = %v, want 1", got)
	}
}

func TestConfigPatchPut(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	node.view.Config.PostgreSQL.Parameters = map[string]any{"max_connections": 100.0, "work_mem": "4MB"}
	_, acts, ts := newTestServer(t, config.RESTAPI{}, node)

	code, body, _ := do(t, ts, "PATCH", "/config", `{"ttl":30,"postgresql":{"parameters":{"work_mem":null,"shared_buffers":"256MB"}},"pause":true}`)
	if code != 200 {
		t.Fatalf("PATCH = %d %s", code, body)
	}
	got := acts.config
	if got == nil || got.TTL.D() != 30*time.Second || !got.Pause || acts.configRev != 7 {
		t.Fatalf("SetConfig got %+v rev %d", got, acts.configRev)
	}
	if _, ok := got.PostgreSQL.Parameters["work_mem"]; ok || got.PostgreSQL.Parameters["shared_buffers"] != "256MB" || got.PostgreSQL.Parameters["max_connections"] != 100.0 {
		t.Errorf("parameters = %v", got.PostgreSQL.Parameters)
	}
	if !strings.Contains(body, `"ttl":30`) || strings.Contains(body, "work_mem") {
		t.Errorf("PATCH body = %s", body)
	}

	for _, c := range []struct {
		method, body string
		err          error
		want         int
		wantBody     string
	}{
		{"PATCH", `{"ttl":1}`, nil, 400, "ttl"},
		{"PATCH", `{"tll":30}`, nil, 400, `unknown field "tll"`},
		{"PATCH", `{"loop_wait":"soon"}`, nil, 400, "bad duration"},
		{"PATCH", `[1]`, nil, 400, "want a JSON object"},
		{"PATCH", `{"ttl":20}`, fmt.Errorf("leader: config changed meanwhile: %w", ErrConflict), 409, "config changed meanwhile"},
		{"PUT", `{"ttl":20,"loop_wait":2}`, nil, 200, `"ttl":20`},
		{"PUT", `{"ttl":20}`, errors.New("etcd down"), 502, "etcd down"},
		{"PUT", `{"nonsense":true}`, nil, 400, "nonsense"},
	} {
		acts.err = c.err
		code, body, _ := do(t, ts, c.method, "/config", c.body)
		if code != c.want || !strings.Contains(body, c.wantBody) {
			t.Errorf("%s /config %s = %d %q, want %d containing %q", c.method, c.body, code, body, c.want, c.wantBody)
		}
	}
	// PUT replaces the whole config: left-out keys take their defaults.
	acts.err = nil
	do(t, ts, "PUT", "/config", `{"ttl":20}`)
	if acts.configRev != 7 || acts.config.LoopWait.D() != time.Second || acts.config.PostgreSQL.Parameters != nil {
		t.Errorf("PUT wrote rev %d config %+v, want rev 7 with defaults", acts.configRev, acts.config)
	}
	// A patch that changes nothing writes nothing.
	n := len(acts.called())
	if code, _, _ := do(t, ts, "PATCH", "/config", `{"ttl":10}`); code != 200 || len(acts.called()) != n {
		t.Errorf("no-op PATCH = %d, calls %v", code, acts.called()[n:])
	}
}

func TestBasicAuthOnUnsafeMethods(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	cfg := config.RESTAPI{Authentication: config.BasicAuth{Username: "admin", Password: "s3cret"}}
	_, acts, ts := newTestServer(t, cfg, node)
	for _, req := range [][2]string{{"POST", "/restart"}, {"POST", "/reload"}, {"POST", "/reinitialize"},
		{"POST", "/switchover"}, {"POST", "/failover"}, {"DELETE", "/switchover"}, {"PATCH", "/config"}, {"PUT", "/config"}} {
		code, body, hdr := do(t, ts, req[0], req[1], `{"x":1}`)
		if code != 401 || hdr.Get("WWW-Authenticate") == "" || body != "no auth header received" {
			t.Errorf("%s %s without auth = %d %q %v", req[0], req[1], code, body, hdr)
		}
		code, body, _ = do(t, ts, req[0], req[1], `{"x":1}`, "admin", "wrong")
		if code != 401 || body != "not authenticated" {
			t.Errorf("%s %s with a wrong password = %d %q", req[0], req[1], code, body)
		}
	}
	if len(acts.called()) != 0 {
		t.Fatalf("unauthenticated requests reached actions: %v", acts.called())
	}
	if code, _, _ := do(t, ts, "POST", "/reload", "", "admin", "s3cret"); code != 202 {
		t.Errorf("authenticated reload = %d", code)
	}
	// Safe methods stay open.
	for _, p := range []string{"/primary", "/patroni", "/cluster", "/metrics"} {
		if code, _, _ := do(t, ts, "GET", p, ""); code != 200 {
			t.Errorf("GET %s = %d without auth", p, code)
		}
	}
}

// TestOddBodiesNeverPanic sends malformed and hostile bodies to every
// unsafe endpoint: each gets a 4xx/5xx answer with a reason, never a panic.
func TestOddBodiesNeverPanic(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	s, _, ts := newTestServer(t, config.RESTAPI{}, node)
	s.PollTimeout = 100 * time.Millisecond
	bodies := []string{`null`, `"x"`, `42`, `true`, `[]`, `{"leader":null,"candidate":null}`, "\xff\xfe{", `{"a":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5001),
		`{"leader":"node1","candidate":"node2","scheduled_at":123}`, `{"force":"maybe"}`, `{"ttl":null,"postgresql":null}`, `{"postgresql":{"parameters":"x"}}`,
		`{"role":7}`, `{"timeout":"abc"}`, `{"loop_wait":-5}`, `{"maximum_lag_on_failover":"1XB"}`}
	for _, ep := range [][2]string{{"POST", "/switchover"}, {"POST", "/failover"}, {"POST", "/restart"}, {"POST", "/reinitialize"},
		{"PATCH", "/config"}, {"PUT", "/config"}, {"POST", "/reload"}, {"DELETE", "/switchover"}} {
		for _, b := range bodies {
			code, body, _ := do(t, ts, ep[0], ep[1], b)
			if code == 500 || code < 200 || (code >= 400 && body == "") {
				t.Errorf("%s %s %.40q = %d %q", ep[0], ep[1], b, code, body)
			}
		}
	}
}
