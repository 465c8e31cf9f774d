package pooler

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// testSessionMode: a session keeps its server (session state survives
// between transactions) and is reset with DISCARD ALL when it leaves.
func testSessionMode(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) { c.PoolMode = "session"; c.DefaultPoolSize = 1 })
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	if _, err := a.Exec(ctx, "PREPARE s1 AS SELECT 5; CREATE TEMP TABLE tt(x int)"); err != nil {
		t.Fatal(err)
	}
	var pid1, pid2, five int
	a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1)
	if err := a.QueryRow(ctx, "EXECUTE s1").Scan(&five); err != nil || five != 5 {
		t.Fatalf("session prepared statement: %v", err)
	}
	a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2)
	if pid1 != pid2 {
		t.Fatalf("session moved from backend %d to %d", pid1, pid2)
	}
	a.Close(ctx)
	b := connect(t, superDSN(p))
	var pid3 int
	b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid3)
	if pid3 != pid1 {
		t.Fatalf("server connection not reused: %d then %d", pid1, pid3)
	}
	if _, err := b.Exec(ctx, "EXECUTE s1"); err == nil {
		t.Fatal("prepared statement survived DISCARD ALL")
	}
}

// testStatementMode: single statements work, transaction blocks are refused.
func testStatementMode(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) { c.PoolMode = "statement" })
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	var n int
	if err := a.QueryRow(ctx, "SELECT $1::int", 3).Scan(&n); err != nil || n != 3 {
		t.Fatalf("statement mode query: %v", err)
	}
	_, err := a.Exec(ctx, "BEGIN")
	if err == nil {
		_, err = a.Exec(ctx, "SELECT 1")
	}
	if err == nil || !strings.Contains(err.Error(), "statement pooling mode") {
		t.Fatalf("BEGIN in statement mode: want refusal, got %v", err)
	}
}

// testTools: psql and pgbench (simple and prepared) through the pooler.
func testTools(t *testing.T, pg *testPG, p *Pooler) {
	if _, err := os.Stat("/usr/bin/pgbench"); err != nil {
		t.Skip("pgbench not installed (scripts/install-deps.sh installs it)")
	}
	host, port := splitAddr(p.Addr())
	env := append(os.Environ(), "PGPASSWORD="+pgtest.SuperPassword, "PGHOST="+host, "PGPORT="+port,
		"PGUSER="+pgtest.SuperUser, "PGDATABASE=postgres", "PGCONNECT_TIMEOUT=5")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = env
		timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	out := run("psql", "-X", "-At", "-c", "SELECT 40 + 2", "-c", "SHOW application_name")
	if !strings.Contains(out, "42") || !strings.Contains(out, "psql") {
		t.Fatalf("psql output %q", out)
	}
	pg.node.Exec(t, "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history")
	run("pgbench", "-i", "-s", "1", "-q")
	// pgbench prepares synchronously (PQprepare blocks its thread), so
	// with more clients than server connections a thread can wait for a
	// server held by an open transaction of its own other client: the
	// TPC-B runs use as many clients as the pool has connections, and the
	// oversubscribed runs are select-only.
	for _, args := range [][]string{
		{"-c", "2", "-M", "simple"}, {"-c", "2", "-M", "extended"}, {"-c", "2", "-M", "prepared"},
		{"-S", "-c", "4", "-M", "simple"}, {"-S", "-c", "4", "-M", "prepared"},
	} {
		clients := args[len(args)-3]
		out := run("pgbench", append([]string{"-n", "-j", "2", "-t", "100"}, args...)...)
		want := "number of transactions actually processed: " + map[string]string{"2": "200/200", "4": "400/400"}[clients]
		if !strings.Contains(out, want) {
			t.Fatalf("pgbench %v:\n%s", args, out)
		}
	}
}

func splitAddr(a string) (string, string) {
	i := strings.LastIndex(a, ":")
	return a[:i], a[i+1:]
}
