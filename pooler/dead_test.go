package pooler

import (
	"testing"
	"time"
)

// testDeadIdleServer: idle server connections that Postgres terminated
// (shutdown, pg_terminate_backend) are noticed before reuse: the client's
// next transaction gets a fresh connection instead of an error.
func testDeadIdleServer(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, nil)
	ctx := tctx(t)
	a := connect(t, poolerDSN(p, md5User, md5Pass, "postgres"))
	var pid1 int
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	admin := pg.node.Conn(t)
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the FATAL arrive
	var pid2 int
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatalf("transaction after the idle server was terminated: %v", err)
	}
	if pid2 == pid1 {
		t.Fatalf("still on terminated backend %d", pid1)
	}
}
