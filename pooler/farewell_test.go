package pooler

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientGone waits until the pooler no longer lists a client of user.
func clientCount(p *Pooler) int { return len(p.clientList()) }

// consoleConn logs in to the admin console.
func consoleConn(t *testing.T, p *Pooler) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(tctx(t), poolerDSN(p, "admin", "adminpw", "pgbouncer"))
	if err != nil {
		t.Fatalf("console login: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// nextQueryFails runs a query on c and wants the pooler's farewell.
func nextQueryFails(t *testing.T, what string, c *pgx.Conn, code, msg string) {
	t.Helper()
	_, err := c.Exec(tctx(t), "SELECT 1")
	pe := wantPgError(t, what, err, code)
	if pe.Severity != "FATAL" || pe.Message != msg {
		t.Fatalf("%s: got %s %q, want FATAL %q", what, pe.Severity, pe.Message, msg)
	}
}

// testFarewells: every session the pooler ends gets an ErrorResponse
// with PgBouncer's wording and a SQLSTATE before the socket closes.
func testFarewells(t *testing.T, pg *testPG) {
	t.Run("ClientIdleTimeout", func(t *testing.T) {
		p := startPooler(t, pg, func(c *config.Pooler) { c.ClientIdleTimeout = config.Duration(300 * time.Millisecond) })
		c := connect(t, superDSN(p))
		if _, err := c.Exec(tctx(t), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the idle client to be closed", func() bool { return clientCount(p) == 0 })
		nextQueryFails(t, "after client_idle_timeout", c, "08P01", "client_idle_timeout")
	})
	t.Run("IdleTransactionTimeout", func(t *testing.T) {
		p := startPooler(t, pg, func(c *config.Pooler) { c.IdleTransactionTimeout = config.Duration(300 * time.Millisecond) })
		c := connect(t, superDSN(p))
		if _, err := c.Exec(tctx(t), "BEGIN; SELECT 1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the client idle in transaction to be closed", func() bool { return clientCount(p) == 0 })
		nextQueryFails(t, "after idle_transaction_timeout", c, "08P01", "idle transaction timeout")
	})
	t.Run("KillClient", func(t *testing.T) {
		p := startPooler(t, pg, func(c *config.Pooler) { c.DefaultPoolSize = 1 })
		admin := consoleConn(t, p)
		idle := connect(t, superDSN(p))
		holder := connect(t, superDSN(p))
		waiter := connect(t, superDSN(p))
		ctx := tctx(t)
		if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		tx, err := holder.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() {
			_, err := waiter.Exec(ctx, "SELECT 1")
			waited <- err
		}()
		cols, rows := adminRows(t, admin, "SHOW CLIENTS")
		col := func(name string) int { return colIndex(t, cols, name) }
		waitFor(t, 10*time.Second, "a waiting client in SHOW CLIENTS", func() bool {
			cols, rows = adminRows(t, admin, "SHOW CLIENTS")
			for _, r := range rows {
				if r[col("state")] == "waiting" {
					return true
				}
			}
			return false
		})
		// Kill every client: waiting for a server (first, before the
		// holder's server is freed), idle, holding one in a transaction.
		sort.SliceStable(rows, func(i, j int) bool {
			return rows[i][col("state")] == "waiting" && rows[j][col("state")] != "waiting"
		})
		for _, r := range rows {
			id := r[col("id")]
			if _, err := strconv.ParseUint(id, 10, 64); err != nil {
				t.Fatalf("SHOW CLIENTS id %q is not a number", id)
			}
			adminRows(t, admin, "KILL_CLIENT "+id)
		}
		nextQueryFails(t, "idle client after KILL_CLIENT", idle, "08P01", "admin forced disconnect")
		_, err = tx.Exec(ctx, "SELECT 1")
		if pe := wantPgError(t, "client in a transaction after KILL_CLIENT", err, "08P01"); pe.Message != "admin forced disconnect" {
			t.Fatalf("client in a transaction: %q", pe.Message)
		}
		select {
		case err := <-waited:
			if pe := wantPgError(t, "waiting client after KILL_CLIENT", err, "08P01"); pe.Message != "admin forced disconnect" {
				t.Fatalf("waiting client: %q", pe.Message)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting client was not ended by KILL_CLIENT")
		}
		if _, err := admin.Exec(ctx, "KILL_CLIENT 999999999").ReadAll(); err == nil {
			t.Fatal("KILL_CLIENT of an unknown id accepted")
		}
		// The server the killed transaction held was closed, not reused.
		fresh := connect(t, superDSN(p))
		if _, err := fresh.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("a new client after KILL_CLIENT: %v", err)
		}
	})
	t.Run("KillDatabase", func(t *testing.T) {
		p := startPooler(t, pg, nil)
		admin := consoleConn(t, p)
		c := connect(t, superDSN(p))
		if _, err := c.Exec(tctx(t), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		adminRows(t, admin, "KILL postgres")
		nextQueryFails(t, "after KILL", c, "08P01", "database removed")
		adminRows(t, admin, "RESUME postgres")
	})
	t.Run("Shutdown", func(t *testing.T) {
		cfg := config.DefaultPooler()
		cfg.Listen = "127.0.0.1:0"
		cfg.AuthFile = pg.userlist
		p, err := New(cfg, NewStaticRouter(pg.node.Addr()), pgtest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Run(ctx)
		}()
		defer func() {
			cancel()
			<-done
		}()
		c := connect(t, superDSN(p))
		if _, err := c.Exec(tctx(t), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		nextQueryFails(t, "after the pooler stopped", c, "08P01", "server shutting down")
	})
}
