package pooler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
)

// Hardening tests against the shared Postgres (run from TestPooler).

// pgCode is the SQLSTATE of err ("" when it carries none).
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// connectAs opens a pgconn as user (any characters) through p.
func connectAs(ctx context.Context, p *Pooler, user, pass string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(poolerDSN(p, "x", pass, "postgres"))
	if err != nil {
		return nil, err
	}
	cfg.User = user
	return pgconn.ConnectConfig(ctx, cfg)
}

// testAuthQueryHardening: auth_query gets the user name as a bound
// parameter (a name that would break out of a quoted literal finds
// nothing), answers are cached (a wrong password is still refused), and
// at most authQueryConns lookups run at once, the others waiting no
// longer than client_login_timeout.
func testAuthQueryHardening(t *testing.T, pg *testPG) {
	pg.node.Exec(t, "CREATE ROLE auth_lookup LOGIN SUPERUSER PASSWORD 'lookup-pw'")
	// With standard_conforming_strings off a backslash escapes a quote:
	// a user name spliced into the query as a literal could end it.
	pg.node.Exec(t, "ALTER ROLE auth_lookup SET standard_conforming_strings = off")
	pg.node.Exec(t, "CREATE ROLE app_inj LOGIN PASSWORD 'inj-secret'")
	body, err := os.ReadFile(pg.userlist)
	if err != nil {
		t.Fatal(err)
	}
	ul := filepath.Join(t.TempDir(), "userlist.txt")
	os.WriteFile(ul, append(body, "\"auth_lookup\" \"lookup-pw\"\n"...), 0o600)
	var hold atomic.Bool
	release := make(chan struct{})
	p := startPoolerHooked(t, pg, NewStaticRouter(pg.node.Addr()), func(c *config.Pooler) {
		c.AuthFile = ul
		c.AuthUser = "auth_lookup"
		c.AuthQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
		c.ClientLoginTimeout = config.Duration(3 * time.Second)
	}, func(p *Pooler) {
		p.hooks.authQuery = func() {
			if hold.Load() {
				<-release
			}
		}
	})
	t.Cleanup(func() { close(release) }) // before the pooler stops
	ctx := tctx(t)

	// Spliced into the query this name would find app_inj's secret (and
	// the client, knowing app_inj's password, would pass the pooler's
	// check; Postgres then refuses the made-up role with the same 28P01).
	injected := `\' OR usename = $$app_inj$$ --`
	_, err = connectAs(ctx, p, injected, "inj-secret")
	if pgCode(err) != codeInvalidPassword {
		t.Fatalf("user %q: want 28P01 (no such user), got %v", injected, err)
	}
	if e, ok := p.auth.get("postgres\x00"+injected, time.Now()); !ok || e.found {
		t.Fatalf("auth_query for user %q: cached %v, found %v; want a cached 'no such user'", injected, ok, e.found)
	}

	q0 := p.auth.queries.Load()
	for i := 0; i < 3; i++ {
		c, err := connectAs(ctx, p, "app_inj", "inj-secret")
		if err != nil {
			t.Fatalf("login %d as app_inj: %v", i, err)
		}
		c.Close(ctx)
	}
	if _, err := connectAs(ctx, p, "app_inj", "wrong"); pgCode(err) != codeInvalidPassword {
		t.Fatalf("wrong password after cached logins: want 28P01, got %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := connectAs(ctx, p, "ghost", "x"); pgCode(err) != codeInvalidPassword {
			t.Fatalf("unknown user: want 28P01, got %v", err)
		}
	}
	if n := p.auth.queries.Load() - q0; n != 2 {
		t.Fatalf("%d auth_query runs for 5 logins of one known and 2 of one unknown user, want 2 (cached)", n)
	}

	// Concurrency: hold every lookup in its slot.
	hold.Store(true)
	const n = 3 * authQueryConns
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := connectAs(context.Background(), p, fmt.Sprintf("nobody%d", i), "x")
			errs <- err
		}()
	}
	waitUntil(t, 10*time.Second, "lookups held", func() bool {
		return p.auth.running.Load() == authQueryConns && p.auth.waiting.Load() == n-authQueryConns
	})
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			if pgCode(err) != codeConnFailure || !strings.Contains(err.Error(), "cannot check passwords") {
				t.Errorf("login waiting for auth_query: want 08006 after client_login_timeout, got %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("logins waiting for auth_query were not ended by client_login_timeout")
		}
	}
}

// testCancelAfterRelease: two clients on a pool of one server connection.
// A's cancel request is held on its way while A's query ends and B's
// begins: it must not cancel B's query.
func testCancelAfterRelease(t *testing.T, pg *testPG) {
	captured := make(chan struct{}, 1)
	release := make(chan struct{})
	p := startPoolerHooked(t, pg, NewStaticRouter(pg.node.Addr()), func(c *config.Pooler) { c.DefaultPoolSize = 1 }, func(p *Pooler) {
		p.hooks.cancel = func() {
			captured <- struct{}{}
			<-release
		}
	})
	ctx := tctx(t)
	watch := pg.node.Conn(t)
	active := func(q string) bool {
		var n int
		err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'", q).Scan(&n)
		return err == nil && n == 1
	}
	a := connect(t, superDSN(p))
	b := connect(t, superDSN(p))
	aDone := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, "SELECT pg_sleep(2)")
		aDone <- err
	}()
	waitUntil(t, 10*time.Second, "A's query running", func() bool {
		return active("SELECT pg_sleep(2)")
	})
	cancelDone := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cancelDone <- a.PgConn().CancelRequest(cctx)
	}()
	select {
	case <-captured:
	case <-time.After(10 * time.Second):
		t.Fatal("the cancel request did not reach the pooler")
	}
	if err := <-aDone; err != nil {
		t.Fatalf("A's query: %v", err)
	}
	bDone := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT pg_sleep(0.3)")
		bDone <- err
	}()
	// Either B's query runs on the server (the cancel would hit it), or
	// the server is held back until the cancel has arrived.
	pl := p.getPool(poolKey{db: "postgres", user: "postgres"})
	waitUntil(t, 10*time.Second, "B's query running or the server parked", func() bool {
		if active("SELECT pg_sleep(0.3)") {
			return true
		}
		_, _, waiting, _ := pl.counts()
		return pl.parkedCount() == 1 && waiting == 1
	})
	close(release)
	if err := <-cancelDone; err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("B's query was hit by A's late cancel request: %v", err)
	}
}

// testConnPanics: a panic in a session goroutine or a server pump ends
// that client (and its server connection) only.
func testConnPanics(t *testing.T, pg *testPG) {
	var victim atomic.Value // where the next panic happens ("" none)
	victim.Store("")
	boom := func(where string) func() {
		return func() {
			if victim.CompareAndSwap(where, "") {
				panic("test: boom in " + where)
			}
		}
	}
	p := startPoolerHooked(t, pg, NewStaticRouter(pg.node.Addr()), func(c *config.Pooler) { c.PoolMode = "session" }, func(p *Pooler) {
		p.hooks.session, p.hooks.pump = boom("session"), boom("pump")
	})
	ctx := tctx(t)
	for i, where := range []string{"session", "pump"} {
		victim.Store(where)
		c, err := pgx.Connect(ctx, superDSN(p))
		if err == nil {
			var one int
			err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
			c.Close(ctx)
		}
		if err == nil {
			t.Fatalf("%s panic: the client's query succeeded", where)
		}
		waitUntil(t, 5*time.Second, where+" panic counted", func() bool { return p.panicCount.Load() == int64(i+1) })
		c2 := connect(t, superDSN(p))
		var one int
		if err := c2.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("after a %s panic: %v", where, err)
		}
		c2.Close(ctx)
	}
	if v := metricValue(t, p, "pgha_pooler_panics_total"); v != 2 {
		t.Fatalf("pgha_pooler_panics_total %v, want 2", v)
	}
}

// testStatementBounds: a client past max_client_prepared_statements is
// ended with 53400; a message longer than the default max_packet_size is
// refused by its header.
func testStatementBounds(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) { c.MaxClientPreparedStatements = 5 })
	ctx := tctx(t)
	c := connect(t, superDSN(p))
	var err error
	k := 0
	for ; k < 10 && err == nil; k++ {
		var v int
		err = c.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", k), 1).Scan(&v)
	}
	if pgCode(err) != codeConfigLimit || k != 6 {
		t.Fatalf("statement %d: want 53400 at the 6th named statement, got %v", k, err)
	}
	if !strings.Contains(err.Error(), "max_client_prepared_statements") {
		t.Fatalf("the error does not name the setting: %v", err)
	}

	p2 := startPooler(t, pg, func(c *config.Pooler) { c.MaxPacketSize = config.DefaultPooler().MaxPacketSize })
	pc, err := pgconn.Connect(ctx, superDSN(p2))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	conn := pc.Conn()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte{'Q', 0x12, 0, 0, 0}); err != nil { // 288 MiB
		t.Fatal(err)
	}
	typ, body, err := readWireMsg(conn)
	if err != nil || typ != 'E' {
		t.Fatalf("oversized message: want an ErrorResponse, got %q %v", typ, err)
	}
	if e := parseErrorFields(body); e.Code != codeProtocolViolation || !strings.Contains(e.Message, "max_packet_size") {
		t.Fatalf("oversized message: got %s %q", e.Code, e.Message)
	}
}
