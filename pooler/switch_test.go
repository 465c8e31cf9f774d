package pooler

import (
	"strconv"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pgtest"
)

// testPrimaryChange: when the router names a new primary, a transaction in
// flight finishes on the old one, a client between transactions waits and
// then runs on the new one without an error.
func testPrimaryChange(t *testing.T, pg *testPG) {
	other := pgtest.NewPrimaryNamed(t, "poolpg2")
	router := NewStaticRouter(pg.node.Addr())
	p := startPoolerRouted(t, pg, router, nil)
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	b := connect(t, superDSN(p))
	var before string
	if err := a.QueryRow(ctx, "SELECT current_setting('port')").Scan(&before); err != nil || before != strconv.Itoa(pg.node.Port) {
		t.Fatalf("before the change: port %q err %v", before, err)
	}
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	router.Set(other.Addr())
	time.Sleep(100 * time.Millisecond) // the pooler pauses
	res := make(chan error, 1)
	var after string
	go func() { res <- a.QueryRow(ctx, "SELECT current_setting('port')").Scan(&after) }()
	time.Sleep(200 * time.Millisecond)
	var inTx string
	if err := tx.QueryRow(ctx, "SELECT current_setting('port')").Scan(&inTx); err != nil || inTx != strconv.Itoa(pg.node.Port) {
		t.Fatalf("running transaction: port %q err %v (want the old primary)", inTx, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit on the old primary: %v", err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("client between transactions got an error: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("client still waiting 15s after the switch")
	}
	if after != strconv.Itoa(other.Port) {
		t.Fatalf("after the change: port %q, want the new primary %d", after, other.Port)
	}
	if p.Paused() {
		t.Fatal("pooler still paused after the switch")
	}
}

// testPrimaryLostThenNew: a failover as the pooler sees it: the primary
// goes (none named), then a new one is named while a transaction still
// holds a server connection to the old one (which, cut off, would never
// answer). New transactions must reach the new primary at once, not
// after the drain's bound (15 s here).
func testPrimaryLostThenNew(t *testing.T, pg *testPG) {
	other := pgtest.NewPrimaryNamed(t, "poolpg3")
	router := NewStaticRouter(pg.node.Addr())
	p := startPoolerRouted(t, pg, router, nil)
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	b := connect(t, superDSN(p))
	if _, err := a.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	tx, err := b.Begin(ctx) // held open: the old primary's running transaction
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	router.Set("")
	waitFor(t, 5*time.Second, "the pooler pauses", p.Paused)
	router.Set(other.Addr())
	start := time.Now()
	var after string
	if err := a.QueryRow(ctx, "SELECT current_setting('port')").Scan(&after); err != nil {
		t.Fatalf("client between transactions: %v", err)
	}
	took := time.Since(start)
	if after != strconv.Itoa(other.Port) {
		t.Fatalf("after the change: port %q, want the new primary %d", after, other.Port)
	}
	t.Logf("a new transaction ran on the new primary %s after it was named", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Fatalf("a new transaction waited %s for the old primary's running one", took)
	}
}
