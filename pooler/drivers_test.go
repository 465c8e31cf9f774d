package pooler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pgha/pgha/config"
)

// The drivers' pools against the pooler: pgx's pgxpool and database/sql
// (pgx's stdlib driver) with 50 connections through the session and the
// transaction port, and what they see when the pooler or Postgres ends a
// connection.

const driverConns = 50

// openDB is database/sql through the pooler, closed at the test's end.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openPool is pgxpool through the pooler, closed at the test's end.
func openPool(t *testing.T, dsn string, size int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = size
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// terminate ends backend pid from a direct connection, as an operator
// (or a Postgres restart) would, and waits until it is gone.
func terminate(t *testing.T, pg *testPG, pid int) {
	t.Helper()
	ctx := tctx(t)
	c := pg.node.Conn(t)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_terminate_backend($1, 5000)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
	}
}

// wantPgError checks that err is an error Postgres or the pooler sent,
// with one of the SQLSTATEs, and not a bare EOF.
func wantPgError(t *testing.T, what string, err error, codes ...string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: want an ErrorResponse with SQLSTATE %v, got %v", what, codes, err)
	}
	for _, c := range codes {
		if pe.Code == c {
			return pe
		}
	}
	t.Fatalf("%s: want SQLSTATE %v, got %s %q", what, codes, pe.Code, pe.Message)
	return nil
}

// load runs n goroutines of inserts and selects (in transactions every
// third round) through db and returns their errors.
func loadSQL(ctx context.Context, db *sql.DB, n, rounds int, table string) []error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if r%3 == 0 {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						errs <- fmt.Errorf("client %d begin: %w", i, err)
						return
					}
					if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+"(v) VALUES ($1)", i); err != nil {
						tx.Rollback()
						errs <- fmt.Errorf("client %d insert in tx: %w", i, err)
						return
					}
					if err := tx.Commit(); err != nil {
						errs <- fmt.Errorf("client %d commit: %w", i, err)
						return
					}
					continue
				}
				if _, err := db.ExecContext(ctx, "INSERT INTO "+table+"(v) VALUES ($1)", i); err != nil {
					errs <- fmt.Errorf("client %d insert: %w", i, err)
					return
				}
				var cnt int
				if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE v = $1", i).Scan(&cnt); err != nil || cnt == 0 {
					errs <- fmt.Errorf("client %d select: %d %v", i, cnt, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// testDriverPools: 50 connections of pgxpool and of database/sql through
// the session and the transaction port do their work, and a server
// connection terminated under them is noticed: the next use fails with
// Postgres's 57P01 and the driver's pool drops the connection.
func testDriverPools(t *testing.T, pg *testPG) {
	pg.node.Exec(t, "CREATE TABLE IF NOT EXISTS drv (id serial primary key, v int)")
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			size := 20
			if mode == "session" {
				// A session holds its server: enough for every client
				// (database/sql keeps 2 idle after its run).
				size = driverConns + 10
			}
			p := startPooler(t, pg, func(c *config.Pooler) {
				c.PoolMode = mode
				c.DefaultPoolSize = size
				c.MaxClientConn = 200
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			db := openDB(t, superDSN(p))
			db.SetMaxOpenConns(driverConns)
			db.SetMaxIdleConns(driverConns)
			for _, err := range loadSQL(ctx, db, driverConns, 12, "drv") {
				t.Error(err)
			}
			db.SetMaxIdleConns(2)
			pool := openPool(t, superDSN(p), driverConns)
			var wg sync.WaitGroup
			errs := make(chan error, driverConns)
			for i := 0; i < driverConns; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					for r := 0; r < 12; r++ {
						var n int
						if err := pool.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil || n != i+1 {
							errs <- fmt.Errorf("pgxpool client %d: %d %v", i, n, err)
							return
						}
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				return
			}

			// pgxpool: terminate the backend under a connection.
			pc, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := pc.Begin(ctx) // holds the server in transaction mode too
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			terminate(t, pg, pid)
			_, err = tx.Exec(ctx, "SELECT 1")
			wantPgError(t, "pgxpool after pg_terminate_backend", err, "57P01", "08P01")
			if !pc.Conn().IsClosed() {
				t.Fatal("pgxpool: the connection is still open after its server was terminated")
			}
			pc.Release()
			var n int
			if err := pool.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
				t.Fatalf("pgxpool after the terminated connection was dropped: %v", err)
			}

			// database/sql: the same with a dedicated connection.
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			stx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := stx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			terminate(t, pg, pid)
			_, err = stx.ExecContext(ctx, "SELECT 1")
			wantPgError(t, "database/sql after pg_terminate_backend", err, "57P01", "08P01")
			stx.Rollback()
			// The driver knows the connection is gone, so database/sql
			// drops it when it next hands it out (ResetSession).
			if err := conn.Raw(func(dc any) error {
				if !dc.(*stdlib.Conn).Conn().IsClosed() {
					return errors.New("the driver's connection is still open")
				}
				return nil
			}); err != nil {
				t.Fatalf("database/sql after pg_terminate_backend: %v", err)
			}
			conn.Close()
			for i := 0; i < 3; i++ {
				var other int
				if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&other); err != nil || other == pid {
					t.Fatalf("database/sql after the terminated connection: backend %d (terminated %d), %v", other, pid, err)
				}
			}
		})
	}
}

// testSessionServerDies: in session mode a client between transactions
// whose server connection is terminated learns it at its next query,
// with Postgres's own error (57P01), as through PgBouncer; it does not
// go on as if on a fresh session.
func testSessionServerDies(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) { c.PoolMode = "session" })
	ctx := tctx(t)
	c := connect(t, superDSN(p))
	if _, err := c.Exec(ctx, "SET application_name = 'before'"); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	terminate(t, pg, pid)
	var got int
	err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&got)
	if err == nil {
		t.Fatalf("the session went on on backend %d after its backend %d was terminated", got, pid)
	}
	pe := wantPgError(t, "query after pg_terminate_backend", err, "57P01")
	if !strings.Contains(pe.Message, "terminating connection") {
		t.Errorf("want Postgres's own message, got %q", pe.Message)
	}
	if !c.IsClosed() {
		t.Fatal("the client connection is still open")
	}
}

// testWaitersSeeError: 50 database/sql connections held open in session
// mode with 20 server connections: the 30 that get no server wait
// query_wait_timeout and then read the pooler's FATAL 08P01, never an
// unexpected EOF.
func testWaitersSeeError(t *testing.T, pg *testPG) {
	pg.node.Exec(t, "CREATE TABLE IF NOT EXISTS waiters (id serial primary key, v int)")
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.PoolMode = "session"
		c.DefaultPoolSize = 20
		c.MaxClientConn = 200
		c.QueryWaitTimeout = config.Duration(2 * time.Second)
	})
	db := openDB(t, superDSN(p))
	db.SetMaxOpenConns(driverConns)
	db.SetMaxIdleConns(driverConns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := loadSQL(ctx, db, driverConns, 6, "waiters")
	if len(errs) != driverConns-20 {
		t.Errorf("%d clients failed, want the %d that got no server", len(errs), driverConns-20)
	}
	for _, err := range errs {
		pe := wantPgError(t, "waiting client", err, "08P01")
		if pe.Message != "query_wait_timeout" || pe.Severity != "FATAL" {
			t.Errorf("waiting client: %s %q, want FATAL query_wait_timeout", pe.Severity, pe.Message)
		}
	}
}

// testSessionChurn: database/sql closing and opening connections all the
// time (MaxIdleConns 2) in session mode, with transactions, and more
// clients than server connections. A leaving client's reset query once
// raced the next client for the server's write buffer: that client's
// session died without a word ("conn closed").
func testSessionChurn(t *testing.T, pg *testPG) {
	pg.node.Exec(t, "CREATE TABLE IF NOT EXISTS churn (id serial primary key, v int)")
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.PoolMode = "session"
		c.DefaultPoolSize = 20
		c.MaxClientConn = 200
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := 0; round < 4; round++ {
		db := openDB(t, superDSN(p))
		db.SetMaxOpenConns(driverConns)
		db.SetMaxIdleConns(2)
		for _, err := range loadSQL(ctx, db, driverConns, 30, "churn") {
			t.Errorf("round %d: %v", round, err)
		}
		db.Close()
		if t.Failed() {
			return
		}
	}
}
