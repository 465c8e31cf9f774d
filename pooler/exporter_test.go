package pooler

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

const exporterBin = "/usr/bin/prometheus-pgbouncer-exporter"

// testExporter runs Debian's prometheus-pgbouncer-exporter against the
// pooler's console after some load and checks that every metric family
// it exports for PgBouncer is there, with real values where PgBouncer
// would have them (the exporter reads SHOW STATS, POOLS, DATABASES and
// LISTS by column name).
func testExporter(t *testing.T, pg *testPG) {
	if _, err := os.Stat(exporterBin); err != nil {
		t.Skip("prometheus-pgbouncer-exporter not installed (scripts/install-deps.sh installs it)")
	}
	p := startPooler(t, pg, func(c *config.Pooler) { c.ReservePoolSize = 1 })
	ctx := tctx(t)
	app := connect(t, superDSN(p)) // stays connected: an active client
	for i := 0; i < 50; i++ {
		if _, err := app.Exec(ctx, "SELECT pg_sleep(0.001)"); err != nil {
			t.Fatal(err)
		}
	}
	host, port := splitAddr(p.Addr())
	mport := strconv.Itoa(pgtest.FreePort(t))
	ectx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ectx, exporterBin, "--host", "127.0.0.1", "--port", mport,
		"--pgbouncer-host", host, "--pgbouncer-port", port, "--pgbouncer-user", "admin")
	cmd.Env = append(os.Environ(), "PGPASSWORD=adminpw", "PGCONNECT_TIMEOUT=5")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + mport + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/metrics: %s\n%s\nexporter log:\n%s", resp.Status, b, logs.String())
			}
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from the exporter's /metrics within 30s (%v); its log:\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	values := map[string][]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			if !strings.Contains(name, `database="postgres"`) && !strings.Contains(name, `database="pgbouncer"`) {
				continue
			}
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		values[name] = append(values[name], v)
	}
	// Every family the exporter makes from PgBouncer; those PgBouncer
	// itself reports as 0 here (no waiting clients, no DNS cache, no
	// free lists) only need to be there.
	nonZero := []string{"pgbouncer_requests_total", "pgbouncer_received_bytes_total", "pgbouncer_sent_bytes_total",
		"pgbouncer_query_microseconds_total", "pgbouncer_active_clients", "pgbouncer_pool_size", "pgbouncer_reserve_pool",
		"pgbouncer_databases", "pgbouncer_users", "pgbouncer_pools", "pgbouncer_used_clients", "pgbouncer_used_servers"}
	present := []string{"pgbouncer_waiting_clients", "pgbouncer_free_clients", "pgbouncer_login_clients", "pgbouncer_free_servers",
		"pgbouncer_dns_names", "pgbouncer_dns_zones", "pgbouncer_dns_queries", "pgbouncer_dns_pending"}
	for _, name := range append(nonZero, present...) {
		if len(values[name]) == 0 {
			t.Errorf("%s missing from the exporter's metrics", name)
		}
	}
	for _, name := range nonZero {
		max := 0.0
		for _, v := range values[name] {
			if v > max {
				max = v
			}
		}
		if max == 0 {
			t.Errorf("%s is 0 after load: %v", name, values[name])
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s\nexporter log:\n%s", body, logs.String())
	}
}
