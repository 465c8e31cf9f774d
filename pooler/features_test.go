package pooler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

func superDSN(p *Pooler) string {
	return poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "postgres")
}

// testPreparedAcrossServers: more clients than server connections, each
// using pgx's statement cache (named prepared statements) in and out of
// transactions, so statements meet server connections that lack them.
func testPreparedAcrossServers(t *testing.T, p *Pooler) {
	const clients, rounds = 6, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, superDSN(p))
	}
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := tctx(t)
			c := conns[i]
			for r := 0; r < rounds; r++ {
				var got int
				q := fmt.Sprintf("SELECT $1::int * %d", r%7+1) // 7 distinct statements
				if err := c.QueryRow(ctx, q, i).Scan(&got); err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, r, err)
					return
				}
				if got != i*(r%7+1) {
					errs <- fmt.Errorf("client %d round %d: got %d", i, r, got)
					return
				}
				if r%10 == 0 {
					tx, err := c.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					var s string
					if err := tx.QueryRow(ctx, "SELECT $1::text || 'x'", "a").Scan(&s); err != nil || s != "ax" {
						errs <- fmt.Errorf("in tx: %v %q", err, s)
						return
					}
					if err := tx.Commit(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
			// Deallocate through the statement cache: answered locally.
			if err := c.DeallocateAll(ctx); err != nil {
				errs <- fmt.Errorf("deallocate: %w", err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testSetCarriedOver: a client's SET follows it to other server connections.
func testSetCarriedOver(t *testing.T, p *Pooler) {
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	b := connect(t, superDSN(p))
	if _, err := a.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "SET TimeZone = 'America/Lima'"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		// Hold one server in a transaction with b so a moves around.
		tx, err := b.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tz string
		if err := a.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil || tz != "Asia/Tokyo" {
			t.Fatalf("round %d: client a sees TimeZone %q (err %v), want Asia/Tokyo", i, tz, err)
		}
		if err := tx.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil || tz != "America/Lima" {
			t.Fatalf("round %d: client b sees TimeZone %q (err %v), want America/Lima", i, tz, err)
		}
		tx.Commit(ctx)
	}
	if got := a.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
		t.Errorf("client a's ParameterStatus TimeZone = %q", got)
	}
}

// testCopy: COPY FROM STDIN and COPY TO STDOUT through the pooler.
func testCopy(t *testing.T, p *Pooler) {
	ctx := tctx(t)
	c := connect(t, superDSN(p))
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS copytest (id int, v text); TRUNCATE copytest"); err != nil {
		t.Fatal(err)
	}
	rows := make([][]any, 5000)
	for i := range rows {
		rows[i] = []any{i, strings.Repeat("v", i%50)}
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"copytest"}, []string{"id", "v"}, pgx.CopyFromRows(rows))
	if err != nil || n != 5000 {
		t.Fatalf("copy from: %d %v", n, err)
	}
	var buf strings.Builder
	tag, err := c.PgConn().CopyTo(ctx, &buf, "COPY copytest TO STDOUT")
	if err != nil || tag.RowsAffected() != 5000 || strings.Count(buf.String(), "\n") != 5000 {
		t.Fatalf("copy to: %v %v lines=%d", tag, err, strings.Count(buf.String(), "\n"))
	}
	// A failing COPY leaves the connection usable.
	_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("x\ty\n"), "COPY copytest FROM STDIN")
	if err == nil {
		t.Fatal("bad COPY data accepted")
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after failed copy: %v", err)
	}
}

// testCancel: a cancel request reaches the server running the query.
func testCancel(t *testing.T, p *Pooler) {
	c := connect(t, superDSN(p))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exec(ctx, "SELECT pg_sleep(20)")
	if err == nil {
		t.Fatal("pg_sleep(20) finished despite cancel")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	// pgx closes a connection whose query was cancelled by context; make
	// sure the pooler itself still serves.
	c2 := connect(t, superDSN(p))
	var one int
	if err := c2.QueryRow(tctx(t), "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	// Cancel through pgconn without closing: the server reports 57014.
	pc := c2.PgConn()
	go func() {
		time.Sleep(200 * time.Millisecond)
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		pc.CancelRequest(cctx)
	}()
	_, err = pc.Exec(tctx(t), "SELECT pg_sleep(20)").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("want query_canceled 57014, got %v", err)
	}
	if err := c2.QueryRow(tctx(t), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after cancel: %v", err)
	}
}

// testPipelineError: an error in the middle of a pipeline fails that
// statement and those after it up to Sync; the session goes on.
func testPipelineError(t *testing.T, p *Pooler) {
	ctx := tctx(t)
	c := connect(t, superDSN(p))
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 3")
	br := c.SendBatch(ctx, b)
	var v int
	if err := br.QueryRow().Scan(&v); err != nil || v != 1 {
		t.Fatalf("first: %v %d", err, v)
	}
	err := br.QueryRow().Scan(&v)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22012" {
		t.Fatalf("second: want 22012, got %v", err)
	}
	if err := br.QueryRow().Scan(&v); err == nil {
		t.Fatal("third ran after the error")
	}
	br.Close()
	if err := c.QueryRow(ctx, "SELECT 4").Scan(&v); err != nil || v != 4 {
		t.Fatalf("after pipeline: %v %d", err, v)
	}
	// Low-level pipeline with several syncs: error in the second segment.
	pl := c.PgConn().StartPipeline(ctx)
	pl.SendQueryParams("SELECT $1::int", [][]byte{[]byte("7")}, nil, nil, nil)
	pl.Sync()
	pl.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	pl.Sync()
	pl.SendQueryParams("SELECT 8", nil, nil, nil, nil)
	pl.Sync()
	var got []string
	for i := 0; i < 8; i++ {
		r, err := pl.GetResults()
		if err != nil {
			got = append(got, "err")
			continue
		}
		switch r := r.(type) {
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				got = append(got, "err")
			} else if len(res.Rows) == 1 {
				got = append(got, string(res.Rows[0][0]))
			}
		case *pgconn.PipelineSync:
			got = append(got, "sync")
		case nil:
			i = 8
		}
	}
	if err := pl.Close(); err != nil {
		t.Fatalf("pipeline close: %v", err)
	}
	if want := "7 sync err sync 8 sync"; strings.Join(got, " ") != want {
		t.Fatalf("pipeline results %q, want %q", strings.Join(got, " "), want)
	}
}

// testLimits: max_client_conn and query_wait_timeout give clean errors.
func testLimits(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.MaxClientConn = 3
		c.DefaultPoolSize = 1
		c.QueryWaitTimeout = config.Duration(500 * time.Millisecond)
	})
	ctx := tctx(t)
	a := connect(t, superDSN(p))
	b := connect(t, superDSN(p))
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.Exec(ctx, "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("want query_wait_timeout, got %v", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("query_wait_timeout after %v, want ~500ms", d)
	}
	tx.Rollback(ctx)
	c := connect(t, superDSN(p))
	_ = c
	extra1, err := pgx.Connect(ctx, superDSN(p))
	if err == nil {
		defer extra1.Close(ctx)
	}
	extra2, err2 := pgx.Connect(ctx, superDSN(p))
	if err2 == nil {
		defer extra2.Close(ctx)
	}
	var pe *pgconn.PgError
	if !(errors.As(err, &pe) && pe.Code == "53300") && !(errors.As(err2, &pe) && pe.Code == "53300") {
		t.Fatalf("over max_client_conn: want 53300, got %v / %v", err, err2)
	}
}
