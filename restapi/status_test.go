package restapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

func TestPatroniTime(t *testing.T) {
	utc := time.UTC
	for in, want := range map[time.Time]string{
		time.Date(2026, 11, 30, 2, 12, 40, 120000000, utc):                   "2026-11-30 02:12:40.120000+00:00",
		time.Date(2026, 11, 30, 2, 12, 40, 0, utc):                           "2026-11-30 02:12:40+00:00",
		time.Date(2026, 11, 30, 2, 12, 40, 999, utc):                         "2026-11-30 02:12:40+00:00",
		time.Date(2026, 11, 30, 2, 12, 40, 1000, time.FixedZone("", 2*3600)): "2026-11-30 02:12:40.000001+02:00",
	} {
		if got := patroniTime(in); got != want {
			t.Errorf("patroniTime(%v) = %q, want %q (Python's str(datetime))", in, got, want)
		}
	}
}

// TestPatroniStatusDocument checks GET /patroni field by field against
// what Patroni 4 answers for a primary and a replica (patroni/api.py,
// get_postgresql_status and _write_status_response).
func TestPatroniStatusDocument(t *testing.T) {
	start := time.Date(2026, 11, 30, 2, 13, 3, 656727000, time.UTC)
	replayed := time.Date(2026, 11, 30, 2, 20, 0, 5000, time.UTC)
	seen := time.Unix(1795000000, 0)
	prio := 1
	tests := []struct {
		name  string
		st    LocalStatus
		view  cluster.View
		dcsOK bool
		want  string
	}{
		{"primary", LocalStatus{Name: "node1", Scope: "demo", Version: "0.1.0", State: cluster.StateRunning, Role: cluster.RolePrimary,
			Queried: true, PostmasterStartTime: start, ServerVersion: 150004, Timeline: 2, XLogLocation: 67108864, IsLeader: true,
			SystemIdentifier: "7713781579262715840", DCSLastSeen: seen,
			Replication: []ReplicationRow{{Usename: "replicator", ApplicationName: "node2", ClientAddr: "127.0.0.1", State: "streaming", SyncState: "async", SyncPriority: 0}}},
			cluster.View{Leader: "node1", Config: config.DynamicConfig{Pause: true}}, true,
			`{"state":"running","postmaster_start_time":"2026-11-30 02:13:03.656727+00:00","role":"primary","server_version":150004,
			"xlog":{"location":67108864},"timeline":2,"replication":[{"usename":"replicator","application_name":"node2","client_addr":"127.0.0.1","state":"streaming","sync_state":"async","sync_priority":0}],
			"pause":true,"dcs_last_seen":1795000000,"database_system_identifier":"7713781579262715840","patroni":{"version":"0.1.0","scope":"demo","name":"node1"}}`},
		{"sync replica", LocalStatus{Name: "node2", Scope: "demo", Version: "0.1.0", State: cluster.StateRunning, Role: cluster.RoleReplica,
			Queried: true, PostmasterStartTime: start, ServerVersion: 150004, Timeline: 2, ReceivedLocation: 67108960, ReplayedLocation: 67108864,
			ReplayedTimestamp: &replayed, LatestEndLSN: 67108960, ReplicationState: "streaming", DCSLastSeen: seen,
			Tags: config.Tags{NoFailover: true, FailoverPriority: &prio}, PendingRestart: true,
			PendingRestartReason: map[string]ParamChange{"max_connections": {OldValue: "100", NewValue: "200"}}},
			cluster.View{Leader: "node1", Config: config.DynamicConfig{SynchronousMode: true}, Sync: &cluster.Sync{Leader: "node1", SyncStandby: "node2"}}, true,
			`{"state":"running","postmaster_start_time":"2026-11-30 02:13:03.656727+00:00","role":"replica","server_version":150004,
			"xlog":{"received_location":67108960,"replayed_location":67108864,"replayed_timestamp":"2026-11-30 02:20:00.000005+00:00","paused":false},
			"sync_standby":true,"timeline":2,"latest_end_lsn":67108960,"replication_state":"streaming","dcs_last_seen":1795000000,
			"tags":{"nofailover":true,"failover_priority":1},"pending_restart":true,"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"}},
			"patroni":{"version":"0.1.0","scope":"demo","name":"node2"}}`},
		{"stopped, etcd lost", LocalStatus{Name: "node3", Scope: "demo", Version: "0.1.0", State: cluster.StateStopped, Role: cluster.RoleReplica},
			cluster.View{}, false,
			`{"state":"stopped","role":"replica","cluster_unlocked":true,"dcs_last_seen":0,"patroni":{"version":"0.1.0","scope":"demo","name":"node3"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := &fakeNode{view: tt.view, ok: tt.dcsOK, local: tt.st}
			s, err := New(config.RESTAPI{}, node, &fakeActions{node: node}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/patroni", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /patroni = %d", rec.Code)
			}
			var got, want map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GET /patroni =\n%s\nwant\n%s", rec.Body.String(), tt.want)
			}
		})
	}
}

func TestHistoryDocTimestamps(t *testing.T) {
	v := cluster.View{History: []cluster.HistoryEntry{
		{Timeline: 1, LSN: 83886536, Reason: "no recovery target specified", Timestamp: time.Date(2026, 11, 30, 2, 22, 23, 400226304, time.UTC), NewLeader: "node2"},
		{Timeline: 2, LSN: 83887288, Reason: "switchover", Timestamp: time.Date(2026, 11, 30, 2, 22, 31, 0, time.UTC), NewLeader: "node3"},
		{Timeline: 3, LSN: 1},
	}}
	b, err := json.Marshal(historyDoc(v))
	if err != nil {
		t.Fatal(err)
	}
	want := `[[1,83886536,"no recovery target specified","2026-11-30T02:22:23.400226+00:00","node2"],[2,83887288,"switchover","2026-11-30T02:22:31+00:00","node3"],[3,1,"","",""]]`
	if string(b) != want {
		t.Errorf("GET /history = %s\nwant %s (Patroni's isoformat)", b, want)
	}
}

// detailNode is a fakeNode that also answers live details.
type detailNode struct {
	*fakeNode
	calls int
}

func (n *detailNode) Detail(_ context.Context, st *LocalStatus) {
	n.calls++
	st.ReceivedLocation, st.ReplayedLocation = 2000, 1900
	st.PostmasterStartTime = time.Date(2026, 11, 30, 2, 13, 3, 0, time.UTC)
}

// TestPatroniLiveDetail: GET /patroni takes the live values of a Node
// that is a Detailer; role health checks do not ask for them.
func TestPatroniLiveDetail(t *testing.T) {
	base := &fakeNode{ok: true, view: cluster.View{Leader: "node1"}, local: LocalStatus{Name: "node2", State: cluster.StateRunning,
		Role: cluster.RoleReplica, Queried: true, ReceivedLocation: 1000, ReplayedLocation: 900}}
	node := &detailNode{fakeNode: base}
	s, err := New(config.RESTAPI{}, node, &fakeActions{node: base}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) map[string]any {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return doc
	}
	doc := get("/patroni")
	xlog := doc["xlog"].(map[string]any)
	if xlog["received_location"] != 2000.0 || xlog["replayed_location"] != 1900.0 || doc["postmaster_start_time"] != "2026-11-30 02:13:03+00:00" {
		t.Errorf("GET /patroni did not take the live detail: %v", doc)
	}
	get("/replica")
	if node.calls != 1 {
		t.Errorf("Detail called %d times, want once (only for /patroni)", node.calls)
	}
}
