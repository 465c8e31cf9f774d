package pooler

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
	})
	u := url.URL{Scheme: "postgres", Host: p.ReadOnlyAddr(), Path: "/postgres",
		RawQuery: "sslmode=disable&connect_timeout=5", User: url.UserPassword(pgtest.SuperUser, pgtest.SuperPassword)}
	ro := connect(t, u.String())
	ctx := tctx(t)
	var one int
	if err := ro.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("read-only port: %v", err)
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
