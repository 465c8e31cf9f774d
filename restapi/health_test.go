package restapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

var healthPaths = []string{"/", "/primary", "/master", "/read-write", "/leader", "/standby-leader",
	"/replica", "/replica?lag=1MB", "/replica?replication_state=streaming", "/read-only", "/sync", "/async", "/health"}

type roleCase struct {
	name  string
	setup func(n *fakeNode)
	// want has one code per healthPaths entry.
	want []int
}

func roleCases() []roleCase {
	const ok, no = 200, 503
	return []roleCase{
		{"primary", func(n *fakeNode) {},
			[]int{ok, ok, ok, ok, ok, no, no, no, no, ok, no, no, ok}},
		{"replica", func(n *fakeNode) { n.local = replicaStatus(100 * mb) },
			[]int{no, no, no, no, no, no, ok, ok, ok, ok, no, ok, ok}},
		{"lagging replica", func(n *fakeNode) { n.local = replicaStatus(80 * mb) },
			[]int{no, no, no, no, no, no, ok, no, ok, ok, no, ok, ok}},
		{"noloadbalance replica", func(n *fakeNode) {
			n.local = replicaStatus(100 * mb)
			n.local.Tags.NoLoadBalance = true
		}, []int{no, no, no, no, no, no, no, no, no, no, no, no, ok}},
		{"replica not streaming", func(n *fakeNode) {
			n.local = replicaStatus(100 * mb)
			n.local.ReplicationState = "in archive recovery"
		}, []int{no, no, no, no, no, no, ok, ok, no, ok, no, ok, ok}},
		{"stopped postgres", func(n *fakeNode) {
			n.local = LocalStatus{Name: "node2", Scope: "demo", State: cluster.StateStopped, Role: cluster.RoleReplica}
		}, []int{no, no, no, no, no, no, no, no, no, no, no, no, no}},
		{"replica whose Postgres does not answer", func(n *fakeNode) {
			n.local = replicaStatus(100 * mb)
			n.local.Queried = false
		}, []int{no, no, no, no, no, no, no, no, no, no, no, no, no}},
		{"paused primary", func(n *fakeNode) { n.view.Config.Pause = true },
			[]int{ok, ok, ok, ok, ok, no, no, no, no, ok, no, no, ok}},
		{"paused primary that lost etcd", func(n *fakeNode) {
			n.view.Config.Pause = true
			n.ok = false
			n.local.IsLeader = false
		}, []int{ok, ok, ok, ok, ok, no, no, no, no, ok, no, no, ok}},
		{"primary that lost etcd", func(n *fakeNode) {
			n.ok = false
			n.local.IsLeader = false
		}, []int{no, no, no, no, no, no, no, no, no, no, no, no, ok}},
		{"replica that lost etcd", func(n *fakeNode) {
			n.ok = false
			n.local = replicaStatus(100 * mb)
		}, []int{no, no, no, no, no, no, ok, ok, ok, ok, no, no, ok}},
		{"sync standby", func(n *fakeNode) {
			n.view.Config.SynchronousMode = true
			n.view.Sync = &cluster.Sync{Leader: "node1", SyncStandby: "node2"}
			n.local = replicaStatus(100 * mb)
		}, []int{no, no, no, no, no, no, ok, ok, ok, ok, ok, no, ok}},
	}
}

func TestHealthEndpointsEveryRole(t *testing.T) {
	for _, rc := range roleCases() {
		t.Run(rc.name, func(t *testing.T) {
			node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
			rc.setup(node)
			_, _, ts := newTestServer(t, config.RESTAPI{}, node)
			for i, path := range healthPaths {
				code, body, hdr := do(t, ts, http.MethodGet, path, "")
				if code != rc.want[i] {
					t.Errorf("GET %s = %d, want %d (body %s)", path, code, rc.want[i], body)
				}
				var doc map[string]any
				if err := json.Unmarshal([]byte(body), &doc); err != nil || doc["role"] == nil || doc["state"] == nil {
					t.Errorf("GET %s body is not the /patroni document: %q (%v)", path, body, err)
				}
				if ct := hdr.Get("Content-Type"); ct != "application/json" {
					t.Errorf("GET %s Content-Type %q", path, ct)
				}
				for _, m := range []string{http.MethodHead, http.MethodOptions} {
					code, body, _ := do(t, ts, m, path, "")
					if code != rc.want[i] || body != "" {
						t.Errorf("%s %s = %d body %q, want %d and no body", m, path, code, body, rc.want[i])
					}
				}
			}
		})
	}
}

func TestHealthTagsAndLagParams(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: replicaStatus(100 * mb)}
	prio := 3
	node.local.Tags = config.Tags{NoFailover: true, FailoverPriority: &prio}
	_, _, ts := newTestServer(t, config.RESTAPI{}, node)
	for path, want := range map[string]int{
		"/replica?tag_nofailover=true":                       200,
		"/replica?tag_nofailover=false":                      503,
		"/replica?tag_failover_priority=3":                   200,
		"/replica?tag_datacenter=east":                       503,
		"/read-only?tag_nofailover=true":                     200,
		"/replica?lag=1048576":                               200,
		"/replica?lag=not-a-size":                            200, // ignored, as Patroni
		"/replica?replication_state=in%20archive%20recovery": 503,
		"/health?tag_nosuch=1":                               503,
	} {
		if code, body, _ := do(t, ts, http.MethodGet, path, ""); code != want {
			t.Errorf("GET %s = %d, want %d (%s)", path, code, want, body)
		}
	}
	// Leader checks ignore tag_ parameters.
	node.local = primaryStatus()
	if code, _, _ := do(t, ts, http.MethodGet, "/primary?tag_datacenter=east", ""); code != 200 {
		t.Errorf("GET /primary?tag_datacenter=east = %d, want 200 (tags ignored)", code)
	}
}

func TestLivenessReadiness(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	s, _, ts := newTestServer(t, config.RESTAPI{}, node)
	check := func(path string, want int) {
		t.Helper()
		if code, body, _ := do(t, ts, http.MethodGet, path, ""); code != want {
			t.Errorf("GET %s = %d, want %d (%s)", path, code, want, body)
		}
	}
	check("/liveness", 200)
	check("/readiness", 200)
	// The HA loop stalled for longer than ttl on a primary.
	s.Now = func() time.Time { return time.Now().Add(11 * time.Second) }
	check("/liveness", 503)
	node.view.Config.Pause = true
	check("/liveness", 200) // paused: a stuck loop is fine
	node.view.Config.Pause = false
	s.Now = time.Now

	node.local = replicaStatus(100 * mb)
	check("/readiness", 200)
	node.local = replicaStatus(90 * mb)
	check("/readiness", 503) // 10 MiB behind, over maximum_lag_on_failover 1 MiB
	check("/readiness?lag=16MB", 200)
	node.local.ReplicationState = ""
	check("/readiness?lag=16MB", 503)
	node.local = LocalStatus{State: cluster.StateStopped, Role: cluster.RoleReplica}
	check("/readiness", 503)
}

func TestPatroniDocument(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	node.local.PendingRestart = true
	node.local.Tags.NoSync = true
	_, _, ts := newTestServer(t, config.RESTAPI{}, node)
	code, body, _ := do(t, ts, http.MethodGet, "/patroni", "")
	if code != 200 {
		t.Fatalf("GET /patroni = %d", code)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"state": "running", "role": "primary", "server_version": 150004.0, "timeline": 2.0,
		"database_system_identifier": "7301234567890123456", "pending_restart": true}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("/patroni %s = %v, want %v", k, doc[k], v)
		}
	}
	if x := doc["xlog"].(map[string]any); x["location"] != float64(100*mb) {
		t.Errorf("xlog = %v", x)
	}
	if p := doc["patroni"].(map[string]any); p["scope"] != "demo" || p["name"] != "node1" || p["version"] != "0.1.0" {
		t.Errorf("patroni = %v", p)
	}
	if tags := doc["tags"].(map[string]any); tags["nosync"] != true {
		t.Errorf("tags = %v", tags)
	}
	if rep := doc["replication"].([]any); len(rep) != 1 || rep[0].(map[string]any)["application_name"] != "node2" {
		t.Errorf("replication = %v", rep)
	}
	if _, ok := doc["cluster_unlocked"]; ok {
		t.Errorf("cluster_unlocked set on a locked cluster")
	}
	// Postgres running but not answering: state unknown, only role kept.
	node.local.Queried = false
	_, body, _ = do(t, ts, http.MethodGet, "/patroni", "")
	if !strings.Contains(body, `"state":"unknown"`) || strings.Contains(body, "xlog") {
		t.Errorf("unqueried /patroni = %s", body)
	}
	// Lost etcd: cluster_unlocked.
	node.ok = false
	_, body, _ = do(t, ts, http.MethodGet, "/patroni", "")
	if !strings.Contains(body, `"cluster_unlocked":true`) {
		t.Errorf("lost-etcd /patroni = %s", body)
	}
}

func TestClusterHistoryConfigDocuments(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	future := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	node.view.Failover = &cluster.Failover{Leader: "node1", Member: "node3", ScheduledAt: &future}
	_, _, ts := newTestServer(t, config.RESTAPI{}, node)

	_, body, _ := do(t, ts, http.MethodGet, "/cluster", "")
	var cd ClusterDoc
	if err := json.Unmarshal([]byte(body), &cd); err != nil {
		t.Fatal(err)
	}
	if cd.Scope != "demo" || len(cd.Members) != 3 || cd.Members[0].Role != "leader" || cd.Members[1].Role != "replica" {
		t.Fatalf("/cluster = %s", body)
	}
	m3 := cd.Members[2]
	if m3.Host != "127.0.0.1" || m3.Port != 15433 || m3.State != "streaming" || m3.ReplayLag != float64(mb) || m3.ReplayLSN != "0/6300000" {
		t.Errorf("node3 = %+v", m3)
	}
	if cd.Members[0].Lag != nil {
		t.Errorf("leader has a lag: %+v", cd.Members[0])
	}
	if cd.ScheduledSwitchover == nil || cd.ScheduledSwitchover.To != "node3" {
		t.Errorf("scheduled_switchover = %+v", cd.ScheduledSwitchover)
	}

	_, body, _ = do(t, ts, http.MethodGet, "/history", "")
	if body != `[[1,52428800,"no recovery target specified","2026-11-22T01:00:00+00:00","node1"]]` {
		t.Errorf("/history = %s", body)
	}
	code, body, _ := do(t, ts, http.MethodGet, "/config", "")
	if code != 200 || !strings.Contains(body, `"ttl":10`) || !strings.Contains(body, `"maximum_lag_on_failover":1048576`) {
		t.Errorf("/config = %d %s", code, body)
	}
	node.view.ConfigRevision = 0
	if code, _, _ := do(t, ts, http.MethodGet, "/config", ""); code != http.StatusBadGateway {
		t.Errorf("/config without a config key = %d, want 502", code)
	}
}
