package pooler

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
)

// testEvictionAndReserve: with max_prepared_statements 2 the pooler closes
// old statements on the server and re-prepares them on demand; with
// reserve_pool_size 1 a client that waited reserve_pool_timeout gets an
// extra connection.
func testEvictionAndReserve(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.MaxPreparedStatements = 2
		c.DefaultPoolSize = 1
		c.ReservePoolSize = 1
		c.ReservePoolTimeout = config.Duration(300 * time.Millisecond)
	})
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	for round := 0; round < 3; round++ {
		for i := 1; i <= 5; i++ {
			var got int
			if err := a.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", i), round).Scan(&got); err != nil || got != round+i {
				t.Fatalf("round %d statement %d: %d %v", round, i, got, err)
			}
		}
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 3 { // two kept plus the one this query prepared
		t.Fatalf("server holds %d prepared statements, want at most 3 with max_prepared_statements 2", n)
	}
	// Reserve pool: a holds the only regular connection in a transaction.
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	b := connect(t, superDSN(p))
	start := time.Now()
	if _, err := b.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatalf("reserve connection: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("got a connection after %v, before reserve_pool_timeout", d)
	}
}
