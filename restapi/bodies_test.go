package restapi

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgha/pgha/config"
)

// managementEndpoints are the endpoints that read a JSON body.
var managementEndpoints = [][2]string{{"POST", "/switchover"}, {"POST", "/failover"}, {"POST", "/restart"},
	{"POST", "/reload"}, {"POST", "/reinitialize"}, {"PATCH", "/config"}, {"PUT", "/config"}}

// TestJunkBodies: every management endpoint answers a malformed body with
// 400 naming the problem, an oversized one with 413; none reaches the
// daemon's actions.
func TestJunkBodies(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	_, acts, ts := newTestServer(t, config.RESTAPI{}, node)
	huge := `{"x":"` + strings.Repeat("y", MaxBodyBytes) + `"}`
	for _, ep := range managementEndpoints {
		for _, c := range []struct {
			name, body string
			want       int
			why        string
		}{
			{"truncated JSON", `{"leader":`, 400, "want a JSON object"},
			{"not JSON", `leader=node1`, 400, "want a JSON object"},
			{"JSON array", `[1,2]`, 400, "want a JSON object"},
			{"JSON string", `"x"`, 400, "want a JSON object"},
			{"JSON null", `null`, 400, "want a JSON object"},
			{"invalid UTF-8", "\xff\xfe{", 400, "want a JSON object"},
			{"trailing garbage", `{"force":true} {`, 400, "want a JSON object"},
			{"number out of range", `{"ttl":1e400}`, 400, "want a JSON object"},
			{"over 1 MiB", huge, 413, "larger than 1048576 bytes"},
		} {
			code, body, _ := do(t, ts, ep[0], ep[1], c.body)
			if code != c.want || !strings.Contains(body, c.why) {
				t.Errorf("%s %s with %s = %d %q, want %d containing %q", ep[0], ep[1], c.name, code, body, c.want, c.why)
			}
		}
	}
	if len(acts.called()) != 0 {
		t.Errorf("junk bodies reached actions: %v", acts.called())
	}
	// Wrong types and unknown fields, per endpoint, as Patroni refuses them.
	for _, c := range []struct {
		method, path, body string
		want               int
		why                string
	}{
		{"POST", "/switchover", `{"leader":1}`, 400, `"leader" must be a string`},
		{"POST", "/switchover", `{"leader":"node1","candidate":["node2"]}`, 400, `"candidate" must be a string`},
		{"POST", "/failover", `{"member":{"name":"node2"}}`, 400, `"member" must be a string`},
		{"POST", "/switchover", `{"leader":"node1","scheduled_at":1700000000}`, 400, `"scheduled_at" must be a string`},
		{"POST", "/reinitialize", `{"force":[true]}`, 400, `"force" must be true or false`},
		{"POST", "/restart", `{"role":7}`, 400, "PostgreSQL role should be either primary, standby_leader, or replica"},
		{"POST", "/restart", `{"timeout":"abc"}`, 400, "Timeout should be a positive number of seconds"},
		{"POST", "/restart", `{"timeout":0}`, 400, "Timeout should be a positive number of seconds"},
		{"POST", "/restart", `{"timeout":true}`, 400, "Timeout should be a positive number of seconds"},
		{"POST", "/restart", `{"postgres_version":15}`, 400, "is not a version string"},
		{"POST", "/restart", `{"postgres_version":"a.b.c"}`, 400, "Invalid PostgreSQL version: a.b.c"},
		{"POST", "/restart", `{"postgres_version":"9.6"}`, 400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"},
		{"POST", "/restart", `{"postgres_version":"15"}`, 400, "Invalid PostgreSQL version format"},
		{"POST", "/restart", `{"reason":"because"}`, 400, "Unknown filter for the scheduled restart: reason"},
		{"PATCH", "/config", `{"ttl":"soon"}`, 400, "bad duration"},
		{"PATCH", "/config", `{"postgresql":"x"}`, 400, "postgresql"},
		{"PATCH", "/config", `{"postgresql":{"use_slots":"yes"}}`, 400, "use_slots"},
		{"PATCH", "/config", `{"maximum_lag_on_failover":"1XB"}`, 400, "XB"},
		{"PUT", "/config", `{"loop_wait":[1]}`, 400, "loop_wait"},
		{"PUT", "/config", `{"tll":30}`, 400, `unknown field "tll"`},
	} {
		code, body, _ := do(t, ts, c.method, c.path, c.body)
		if code != c.want || !strings.Contains(body, c.why) {
			t.Errorf("%s %s %s = %d %q, want %d containing %q", c.method, c.path, c.body, code, body, c.want, c.why)
		}
	}
	if len(acts.called()) != 0 {
		t.Errorf("bad requests reached actions: %v", acts.called())
	}
	// Patroni's good forms still pass.
	for _, c := range [][3]string{
		{"POST", "/restart", `{"timeout":"30s"}`}, {"POST", "/restart", `{"timeout":"30"}`}, {"POST", "/restart", `{"timeout":30}`},
		{"POST", "/restart", `{"postgres_version":"15.5"}`}, {"POST", "/restart", `{"postgres_version":"16.0.1"}`},
		{"POST", "/reload", `{}`}, {"POST", "/reinitialize", `{"force":"true"}`},
	} {
		if code, body, _ := do(t, ts, c[0], c[1], c[2]); code != 200 && code != 202 {
			t.Errorf("%s %s %s = %d %q, want success", c[0], c[1], c[2], code, body)
		}
	}
}

// TestRestartPostgresVersionFilter: as Patroni, restart with
// postgres_version restarts only a server older than that version.
func TestRestartPostgresVersionFilter(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()} // server_version 150004
	_, acts, ts := newTestServer(t, config.RESTAPI{}, node)
	for _, c := range []struct {
		version string
		want    int
	}{{"15.4", 503}, {"14.9", 503}, {"15.5", 200}, {"16.0", 200}} {
		code, body, _ := do(t, ts, "POST", "/restart", `{"postgres_version":"`+c.version+`"}`)
		if code != c.want {
			t.Errorf("restart with postgres_version %s on 15.4 = %d %q, want %d", c.version, code, body, c.want)
		}
	}
	if got := len(acts.called()); got != 2 {
		t.Errorf("restarts carried out = %d, want 2: %v", got, acts.called())
	}
}

// FuzzManagementBodies drives the router in-process with arbitrary
// methods, paths, bodies and headers against the fake node: nothing may
// panic (the recoverer would answer 500) and nothing may answer 5xx
// except Patroni's 503s (unknown outcome, conditions not met, etcd
// unreachable). The fake view is never paused, so Patroni's 500 for a
// restart scheduled in the paused state cannot occur; SetConfig never
// fails, so PUT's 502 cannot either.
func FuzzManagementBodies(f *testing.F) {
	bodies := []string{``, `{}`, `null`, `"x"`, `42`, `true`, `[]`, `{"leader":"node1","candidate":"node2"}`,
		`{"leader":"node1","candidate":"node2","scheduled_at":"2030-01-01T00:00:00Z"}`, `{"candidate":"node3"}`,
		`{"leader":null,"candidate":null}`, "\xff\xfe{", `{"a":{"a":{"a":1}}}`, `{"force":"maybe"}`, `{"force":true}`,
		`{"ttl":null,"postgresql":null}`, `{"postgresql":{"parameters":{"work_mem":"8MB","x":null}}}`, `{"postgresql":{"parameters":"x"}}`,
		`{"role":"master","restart_pending":true,"timeout":"5m","postgres_version":"16.1"}`, `{"schedule":"2030-01-01T00:00:00Z"}`,
		`{"loop_wait":-5}`, `{"maximum_lag_on_failover":"1XB"}`, `{"ttl":30,"loop_wait":2,"retry_timeout":5,"pause":true}`}
	for i, b := range bodies {
		ep := managementEndpoints[i%len(managementEndpoints)]
		f.Add(ep[0], ep[1], []byte(b), "application/json", "", "")
	}
	f.Add("DELETE", "/switchover", []byte(nil), "", "", "")
	f.Add("GET", "/replica?lag=1XB&replication_state=x&tag_nofailover=true", []byte(nil), "", "", "")
	f.Add("POST", "/reload", []byte(`{}`), "text/plain", "http://evil.example", "evil.example:8008")
	f.Add("OPTIONS", "/read-only", []byte(nil), "", "null", "[::1]:8008")

	var logs bytes.Buffer
	node := &fakeNode{}
	acts := &fakeActions{node: node}
	s, err := New(config.RESTAPI{Listen: "127.0.0.1:8008"}, node, acts, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		f.Fatal(err)
	}
	s.PollInterval, s.PollTimeout = time.Millisecond, 5*time.Millisecond
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, path string, body []byte, contentType, origin, host string) {
		node.mu.Lock()
		node.view, node.ok, node.local = baseView(), true, primaryStatus()
		node.mu.Unlock()
		acts.mu.Lock()
		acts.calls, acts.failovers, acts.config = nil, nil, nil
		acts.mu.Unlock()
		logs.Reset()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, "http://127.0.0.1:8008"+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a server would parse
		}
		if host != "" {
			req.Host = host
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q (%d body bytes, Content-Type %q) = %d %q\nlog:\n%s", method, path, len(body), contentType, rec.Code, rec.Body.String(), logs.String())
		}
		// Health checks (GET, HEAD, OPTIONS) may answer with a status
		// only, as Patroni's do; every other refusal says why.
		safe := method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
		if rec.Code >= 400 && !safe && rec.Body.Len() == 0 {
			t.Fatalf("%s %q = %d with an empty body: errors must say why", method, path, rec.Code)
		}
	})
}
