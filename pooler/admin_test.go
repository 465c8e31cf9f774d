package pooler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/internal/pgtest"
)

// adminRows runs a console command with the simple protocol and returns
// the column names and the rows as text.
func adminRows(t *testing.T, c *pgconn.PgConn, q string) ([]string, [][]string) {
	t.Helper()
	res, err := c.Exec(tctx(t), q).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	r := res[0]
	var names []string
	for _, f := range r.FieldDescriptions {
		names = append(names, f.Name)
	}
	var rows [][]string
	for _, row := range r.Rows {
		var s []string
		for _, v := range row {
			s = append(s, string(v))
		}
		rows = append(rows, s)
	}
	return names, rows
}

func testAdminConsole(t *testing.T, p *Pooler) {
	ctx := tctx(t)
	app := connect(t, superDSN(p))
	if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgconn.ParseConfig(poolerDSN(p, "admin", "adminpw", "pgbouncer"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("console login: %v", err)
	}
	defer admin.Close(context.Background())

	cols, rows := adminRows(t, admin, "SHOW POOLS")
	want := "database user cl_active cl_waiting cl_active_cancel_req cl_waiting_cancel_req sv_active sv_active_cancel sv_being_canceled sv_idle sv_used sv_tested sv_login maxwait maxwait_us pool_mode load_balance_hosts"
	if strings.Join(cols, " ") != want {
		t.Fatalf("SHOW POOLS columns %v", cols)
	}
	found := false
	for _, r := range rows {
		if r[0] == "postgres" && r[1] == pgtest.SuperUser && r[15] == "transaction" {
			found = true
		}
	}
	if !found {
		t.Fatalf("SHOW POOLS lacks postgres/postgres: %v", rows)
	}
	for _, q := range []string{"SHOW CLIENTS", "SHOW SERVERS", "SHOW STATS", "SHOW DATABASES", "SHOW CONFIG", "SHOW VERSION", "SHOW LISTS"} {
		cols, rows := adminRows(t, admin, q)
		if len(cols) == 0 || len(rows) == 0 {
			t.Errorf("%s: %d columns, %d rows", q, len(cols), len(rows))
		}
	}
	_, rows = adminRows(t, admin, "SHOW STATS")
	if rows[0][1] == "0" {
		t.Errorf("SHOW STATS counts no transactions: %v", rows)
	}
	// PAUSE: a new transaction waits until RESUME, then succeeds.
	adminRows(t, admin, "PAUSE")
	done := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, "SELECT 2")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("query ran while paused (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	adminRows(t, admin, "RESUME")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("query after RESUME: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("query still waiting after RESUME")
	}
	adminRows(t, admin, "RECONNECT")
	adminRows(t, admin, "RELOAD")
	if _, err := app.Exec(ctx, "SELECT 3"); err != nil {
		t.Fatalf("after RECONNECT: %v", err)
	}
	// stats_users may SHOW but not act; unknown users are refused.
	st, err := pgconn.Connect(ctx, poolerDSN(p, "stats", "x", "pgbouncer"))
	if err == nil {
		st.Close(ctx)
		t.Fatal("stats user without password accepted")
	}
	_, err = pgx.Connect(ctx, poolerDSN(p, scramUser, scramPass, "pgha"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Fatalf("non-admin console login: want 28000, got %v", err)
	}
	if _, err := admin.Exec(ctx, "BOGUS").ReadAll(); err == nil {
		t.Fatal("unknown console command accepted")
	}
}
