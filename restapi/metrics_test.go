package restapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pgha/pgha/config"
)

func testutilCounter(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestMetrics(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	s, _, ts := newTestServer(t, config.RESTAPI{}, node)
	s.Metrics().ObserveLoop(3e6)
	s.Metrics().Failovers.Inc()
	code, body, _ := do(t, ts, http.MethodGet, "/metrics", "")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`patroni_primary{name="node1",scope="demo"} 1`,
		`patroni_replica{name="node1",scope="demo"} 0`,
		`patroni_postgres_running{name="node1",scope="demo"} 1`,
		`patroni_postgres_timeline{name="node1",scope="demo"} 2`,
		`patroni_xlog_location{name="node1",scope="demo"} 1.048576e+08`,
		`patroni_cluster_unlocked{name="node1",scope="demo"} 0`,
		`patroni_is_paused{name="node1",scope="demo"} 0`,
		`patroni_pending_restart{name="node1",scope="demo"} 0`,
		`patroni_version{name="node1",scope="demo"} 100`,
		`patroni_postgres_server_version{name="node1",scope="demo"} 150004`,
		`patroni_failover_priority{name="node1",scope="demo"} 1`,
		`pgha_replication_lag_bytes{member="node3",scope="demo"} 1.048576e+06`,
		`pgha_replication_lag_bytes{member="node2",scope="demo"} 0`,
		`pgha_failovers_total 1`,
		`pgha_ha_loop_duration_seconds_count 1`,
		`go_goroutines`,
		`process_cpu_seconds_total`,
		`# TYPE patroni_xlog_location counter`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(body, `patroni_dcs_last_seen{name="node1",scope="demo"} 1`) {
		t.Errorf("dcs_last_seen not an epoch")
	}
	// A replica that lost etcd with the cluster paused.
	node.local = replicaStatus(90 * mb)
	node.ok = false
	node.view.Config.Pause = true
	_, body, _ = do(t, ts, http.MethodGet, "/metrics", "")
	for _, want := range []string{
		`patroni_replica{name="node2",scope="demo"} 1`,
		`patroni_primary{name="node2",scope="demo"} 0`,
		`patroni_xlog_location{name="node2",scope="demo"} 0`,
		`patroni_xlog_replayed_location{name="node2",scope="demo"} 9.437184e+07`,
		`patroni_cluster_unlocked{name="node2",scope="demo"} 1`,
		`patroni_is_paused{name="node2",scope="demo"} 1`,
		`patroni_postgres_streaming{name="node2",scope="demo"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
