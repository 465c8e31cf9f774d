package pooler

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestPooler runs the integration tests against one real Postgres.
func TestPooler(t *testing.T) {
	pg := newPG(t)
	sockDir := t.TempDir()
	p := startPooler(t, pg, func(c *config.Pooler) { c.UnixSocketDir = sockDir })
	t.Run("Basic", func(t *testing.T) { testBasic(t, p) })
	t.Run("UnixSocket", func(t *testing.T) {
		_, port := splitAddr(p.Addr())
		c := connect(t, fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=postgres sslmode=disable",
			sockDir, port, pgtest.SuperUser, pgtest.SuperPassword))
		var one int
		if err := c.QueryRow(tctx(t), "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("query over the unix socket: %v", err)
		}
	})
	t.Run("Auth", func(t *testing.T) { testAuth(t, p) })
	t.Run("PreparedAcrossServers", func(t *testing.T) { testPreparedAcrossServers(t, p) })
	t.Run("SetCarriedOver", func(t *testing.T) { testSetCarriedOver(t, p) })
	t.Run("Copy", func(t *testing.T) { testCopy(t, p) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, p) })
	t.Run("PipelineError", func(t *testing.T) { testPipelineError(t, p) })
	t.Run("AdminConsole", func(t *testing.T) { testAdminConsole(t, p) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, pg) })
	t.Run("SessionMode", func(t *testing.T) { testSessionMode(t, pg) })
	t.Run("StatementMode", func(t *testing.T) { testStatementMode(t, pg) })
	t.Run("Tools", func(t *testing.T) { testTools(t, pg, p) })
	t.Run("AuthQuery", func(t *testing.T) { testAuthQuery(t, pg) })
	t.Run("ClientTLS", func(t *testing.T) { testClientTLS(t, pg) })
	t.Run("HostSSL", func(t *testing.T) { testHostSSL(t, pg) })
	t.Run("ReadOnlyPort", func(t *testing.T) { testReadOnlyPort(t, pg) })
	t.Run("EvictionAndReserve", func(t *testing.T) { testEvictionAndReserve(t, pg) })
	t.Run("DeadIdleServer", func(t *testing.T) { testDeadIdleServer(t, pg) })
	t.Run("PrimaryChange", func(t *testing.T) { testPrimaryChange(t, pg) })
	t.Run("PrimaryLostThenNew", func(t *testing.T) { testPrimaryLostThenNew(t, pg) })
	t.Run("ServerSocket", func(t *testing.T) { testServerSocket(t, pg) })
	t.Run("AuthQueryHardening", func(t *testing.T) { testAuthQueryHardening(t, pg) })
	t.Run("CancelAfterRelease", func(t *testing.T) { testCancelAfterRelease(t, pg) })
	t.Run("ConnPanics", func(t *testing.T) { testConnPanics(t, pg) })
	t.Run("StatementBounds", func(t *testing.T) { testStatementBounds(t, pg) })
	t.Run("DriverPools", func(t *testing.T) { testDriverPools(t, pg) })
	t.Run("SessionServerDies", func(t *testing.T) { testSessionServerDies(t, pg) })
	t.Run("WaitersSeeError", func(t *testing.T) { testWaitersSeeError(t, pg) })
	t.Run("SessionChurn", func(t *testing.T) { testSessionChurn(t, pg) })
	t.Run("Farewells", func(t *testing.T) { testFarewells(t, pg) })
	t.Run("StartupParams", func(t *testing.T) { testStartupParams(t, pg) })
	t.Run("DatabasesUsers", func(t *testing.T) { testDatabasesUsers(t, pg) })
	t.Run("ConsoleFigures", func(t *testing.T) { testConsoleFigures(t, pg) })
	t.Run("Exporter", func(t *testing.T) { testExporter(t, pg) })
}

// testServerSocket: a Router may name Postgres by its Unix socket path
// (pooler.local_unix_socket); server logins (SCRAM by the client's proof,
// md5) and queries go over the socket, and SHOW SERVERS says "unix".
func testServerSocket(t *testing.T, pg *testPG) {
	p := startPoolerRouted(t, pg, NewStaticRouter(pg.node.Instance.SocketPath()), nil)
	ctx := tctx(t)
	for _, u := range []struct{ user, pass string }{{scramUser, scramPass}, {md5User, md5Pass}} {
		c := connect(t, poolerDSN(p, u.user, u.pass, "postgres"))
		var local bool
		if err := c.QueryRow(ctx, "SELECT client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&local); err != nil {
			t.Fatalf("%s: %v", u.user, err)
		}
		if !local {
			t.Fatalf("%s: the server connection is not on the Unix socket", u.user)
		}
	}
	admin := connect(t, poolerDSN(p, "admin", "adminpw", "pgbouncer"))
	rows, err := admin.Query(ctx, "SHOW SERVERS", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range rows.FieldDescriptions() {
			if f.Name == "addr" {
				addrs = append(addrs, fmt.Sprint(vals[i]))
			}
		}
	}
	if rows.Err() != nil || len(addrs) == 0 {
		t.Fatalf("SHOW SERVERS: %v, addrs %v", rows.Err(), addrs)
	}
	for _, a := range addrs {
		if a != "unix" {
			t.Fatalf("SHOW SERVERS addr %q, want unix", a)
		}
	}
}

func testBasic(t *testing.T, p *Pooler) {
	c := connect(t, poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "postgres"))
	ctx := tctx(t)
	var n int
	if err := c.QueryRow(ctx, "SELECT 1 + $1::int", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("query: %v %d", err, n)
	}
	var v string
	if err := c.QueryRow(ctx, "SELECT version()", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		t.Fatal(err)
	}
	// After two idle maintenance ticks the session moves to a fresh
	// goroutine; it must carry on as if nothing happened.
	before := p.respawns.Load()
	deadline := time.Now().Add(10 * time.Second)
	for p.respawns.Load() == before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if p.respawns.Load() == before {
		t.Fatal("idle session was not moved to a fresh goroutine within 10s")
	}
	if err := c.QueryRow(ctx, "SELECT 1 + $1::int", 1).Scan(&n); err != nil || n != 2 {
		t.Fatalf("query after respawn: %v %d", err, n)
	}
}

func testAuth(t *testing.T, p *Pooler) {
	ctx := tctx(t)
	for _, tc := range []struct{ user, pass string }{
		{scramUser, scramPass}, {md5User, md5Pass}, {pgtest.SuperUser, pgtest.SuperPassword},
	} {
		c := connect(t, poolerDSN(p, tc.user, tc.pass, "postgres"))
		var who string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != tc.user {
			t.Fatalf("%s: current_user %q, err %v", tc.user, who, err)
		}
	}
	_, err := pgx.Connect(ctx, poolerDSN(p, scramUser, "wrong", "postgres"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: want SQLSTATE 28P01, got %v", err)
	}
	_, err = pgx.Connect(ctx, poolerDSN(p, "nobody", "x", "postgres"))
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("unknown user: want SQLSTATE 28P01, got %v", err)
	}
}
