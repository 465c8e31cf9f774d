package pooler

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// testReadOnlyPort: read_only_listen routes to the router's replicas and
// fails cleanly (after query_wait_timeout) when there are none.
func testReadOnlyPort(t *testing.T, pg *testPG) {
	router := NewStaticRouter(pg.node.Addr(), pg.node.Addr())
	p := startPoolerRouted(t, pg, router, func(c *config.Pooler) {
		c.ReadOnlyListen = "127.0.0.1:0"
		c.QueryWaitTimeout = config.Duration(1 * time.Second)
		c.AdminUsers = []string{pgtest.SuperUser}
	})
	u := url.URL{Scheme: "postgres", Host: p.ReadOnlyAddr(), Path: "/postgres",
		RawQuery: "sslmode=disable&connect_timeout=5", User: url.UserPassword(pgtest.SuperUser, pgtest.SuperPassword)}
	ro := connect(t, u.String())
	ctx := tctx(t)
	var one int
	if err := ro.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("read-only port: %v", err)
	}
	// The same (database, user) on both ports: the console keeps the rows
	// apart, as pgbouncer_exporter needs unique label sets.
	rw := connect(t, superDSN(p))
	if _, err := rw.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	admin, err := pgconn.Connect(ctx, poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "pgbouncer"))
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{"SHOW POOLS", "SHOW STATS", "SHOW DATABASES"} {
		_, rows := adminRows(t, admin, q)
		seen := map[string]bool{}
		for _, r := range rows {
			k := r[0]
			if q == "SHOW POOLS" {
				k += "/" + r[1]
			}
			if seen[k] {
				t.Errorf("%s: duplicate row %q: %v", q, k, rows)
			}
			seen[k] = true
		}
		if !seen["postgres_ro"] && !seen["postgres_ro/"+pgtest.SuperUser] {
			t.Errorf("%s: no row for the read-only pool (postgres_ro): %v", q, rows)
		}
	}
	router.Set(pg.node.Addr()) // no replicas left
	time.Sleep(1500 * time.Millisecond)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := pgx.Connect(cctx, u.String())
	if err == nil {
		_, err = c2.Exec(cctx, "SELECT 1")
		c2.Close(cctx)
	}
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("read-only port without replicas: want a clean error naming replicas, got %v", err)
	}
}
