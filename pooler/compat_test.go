package pooler

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// connectWith connects through the pooler with extra startup parameters.
func connectWith(t *testing.T, dsn string, params map[string]string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	c, err := pgx.ConnectConfig(tctx(t), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

func queryString(t *testing.T, c *pgx.Conn, q string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(tctx(t), q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

// testStartupParams: what clients send at startup reaches the server and
// follows them from one server connection to the next in transaction
// mode (one server connection for three clients), as through PgBouncer
// with track_extra_parameters = search_path; unknown parameters are
// refused unless ignored.
func testStartupParams(t *testing.T, pg *testPG) {
	pg.node.Exec(t, "CREATE SCHEMA IF NOT EXISTS sp_one; CREATE SCHEMA IF NOT EXISTS sp_two;"+
		"CREATE TABLE IF NOT EXISTS sp_one.which (v text); CREATE TABLE IF NOT EXISTS sp_two.which (v text);"+
		"TRUNCATE sp_one.which, sp_two.which; INSERT INTO sp_one.which VALUES ('one'); INSERT INTO sp_two.which VALUES ('two')")
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startPooler(t, pg, func(c *config.Pooler) {
				c.PoolMode = mode
				c.DefaultPoolSize = 1
				if mode == "session" {
					c.DefaultPoolSize = 4
				}
				c.TrackExtraParameters = []string{"IntervalStyle", "search_path"}
				c.IgnoreStartupParameters = []string{"extra_float_digits"}
			})
			a, err := connectWith(t, superDSN(p), map[string]string{"options": `-c search_path=sp_one -c IntervalStyle=iso_8601`, "application_name": "app-a"})
			if err != nil {
				t.Fatal(err)
			}
			b, err := connectWith(t, superDSN(p), map[string]string{"search_path": "sp_two", "application_name": "app-b", "extra_float_digits": "3"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := connectWith(t, superDSN(p), map[string]string{"options": "--search-path=sp_two,public"})
			if err != nil {
				t.Fatal(err)
			}
			d := connect(t, superDSN(p)) // sends none: Postgres's defaults
			for round := 0; round < 3; round++ {
				for _, x := range []struct {
					c          *pgx.Conn
					which, app string
				}{{a, "one", "app-a"}, {b, "two", "app-b"}, {c, "two", ""}} {
					if got := queryString(t, x.c, "SELECT v FROM which"); got != x.which {
						t.Fatalf("round %d: search_path sent at startup lost: found %q, want %q", round, got, x.which)
					}
					if got := queryString(t, x.c, "SELECT current_setting('application_name')"); got != x.app {
						t.Fatalf("round %d: application_name %q, want %q", round, got, x.app)
					}
				}
				if got := queryString(t, a, "SELECT current_setting('IntervalStyle')"); got != "iso_8601" {
					t.Fatalf("IntervalStyle from options: %q", got)
				}
				if got := queryString(t, d, "SHOW search_path"); got != `"$user", public` {
					t.Fatalf("a client that sent no search_path got %q", got)
				}
				if got := queryString(t, d, "SELECT current_setting('IntervalStyle')"); got != "postgres" {
					t.Fatalf("a client that sent no IntervalStyle got %q", got)
				}
			}
			if got := a.PgConn().ParameterStatus("IntervalStyle"); got != "iso_8601" {
				t.Errorf("client a was told IntervalStyle %q", got)
			}
		})
	}
	t.Run("Refused", func(t *testing.T) {
		p := startPooler(t, pg, func(c *config.Pooler) { c.IgnoreStartupParameters = nil })
		for _, tc := range []struct {
			params map[string]string
			msg    string
		}{
			{map[string]string{"work_mem": "64MB"}, "unsupported startup parameter: work_mem"},
			{map[string]string{"extra_float_digits": "3"}, "unsupported startup parameter: extra_float_digits"},
			{map[string]string{"options": "-c work_mem=1MB"}, "unsupported startup parameter in options: work_mem"},
			{map[string]string{"options": "-d 5"}, "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"},
			{map[string]string{"replication": "database"}, "unsupported startup parameter: replication"},
		} {
			_, err := connectWith(t, superDSN(p), tc.params)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Message != tc.msg || pe.Severity != "FATAL" {
				t.Errorf("%v: want FATAL %q, got %v", tc.params, tc.msg, err)
			}
		}
		p = startPooler(t, pg, func(c *config.Pooler) { c.IgnoreStartupParameters = []string{"options", "work_mem"} })
		c, err := connectWith(t, superDSN(p), map[string]string{"options": "-c geqo=off", "work_mem": "64MB"})
		if err != nil {
			t.Fatalf("ignored parameters: %v", err)
		}
		if got := queryString(t, c, "SHOW geqo"); got != "on" {
			t.Fatalf("an ignored setting reached the server: geqo %q", got)
		}
	})
}

// testDatabasesUsers: PgBouncer's [databases] and [users] settings.
func testDatabasesUsers(t *testing.T, pg *testPG) {
	ctx := tctx(t)
	direct := pg.node.Conn(t)
	var exists bool
	direct.QueryRow(ctx, "SELECT true FROM pg_database WHERE datname = 'pgha_real'").Scan(&exists)
	if !exists {
		pg.node.Exec(t, "CREATE DATABASE pgha_real")
	}
	pg.node.Exec(t, "GRANT ALL ON items TO "+scramUser)
	one, two, three := 1, 2, 3
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.PoolMode = "transaction"
		c.DefaultPoolSize = 5
		c.QueryWaitTimeout = config.Duration(time.Second)
		c.Databases = map[string]config.PoolerDatabase{
			"appdb":    {DBName: "pgha_real", PoolSize: &three, PoolMode: "session", TimeZone: "Asia/Tokyo"},
			"capped":   {DBName: "postgres", MaxDBConnections: 2},
			"postgres": {ReservePool: &one},
			"forced":   {DBName: "postgres", User: md5User, Password: md5Pass},
		}
		c.Users = map[string]config.PoolerUser{
			scramUser: {MaxUserConnections: 1},
			md5User:   {PoolMode: "statement", PoolSize: &two},
		}
	})
	// dbname alias, session mode from the database, its TimeZone.
	a := connect(t, poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "appdb"))
	if got := queryString(t, a, "SELECT current_database()"); got != "pgha_real" {
		t.Fatalf("appdb is %q on Postgres, want pgha_real", got)
	}
	if got := queryString(t, a, "SHOW TimeZone"); got != "Asia/Tokyo" {
		t.Fatalf("appdb's timezone: %q", got)
	}
	pid1 := queryString(t, a, "SELECT pg_backend_pid()::text")
	other := connect(t, poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "appdb"))
	queryString(t, other, "SELECT 1::text")
	if pid2 := queryString(t, a, "SELECT pg_backend_pid()::text"); pid1 != pid2 {
		t.Fatalf("appdb is session mode but the client moved from %s to %s", pid1, pid2)
	}
	// Databases not listed (and no "*") are refused as by PgBouncer.
	_, err := pgx.Connect(ctx, poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "pgha_real"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Message != "no such database: pgha_real" {
		t.Fatalf("unlisted database: want FATAL no such database, got %v", err)
	}
	// Forced user: the server login is app_md5 whoever the client is.
	f := connect(t, poolerDSN(p, scramUser, scramPass, "forced"))
	if got := queryString(t, f, "SELECT current_user::text"); got != md5User {
		t.Fatalf("forced user: current_user %q, want %s", got, md5User)
	}
	// A user's pool_mode wins over the database's: statement mode.
	s := connect(t, poolerDSN(p, md5User, md5Pass, "postgres"))
	_, err = s.Exec(ctx, "BEGIN")
	if err == nil {
		_, err = s.Exec(ctx, "SELECT 1")
	}
	if err == nil || !strings.Contains(err.Error(), "statement pooling mode") {
		t.Fatalf("user pool_mode statement: want the refusal of a transaction, got %v", err)
	}
	// max_db_connections 2 on "capped": a third transaction waits out
	// query_wait_timeout though the pool would allow 5.
	holdN := func(n int, dsn string) ([]pgx.Tx, error) {
		var txs []pgx.Tx
		for i := 0; i < n; i++ {
			c := connect(t, dsn)
			tx, err := c.Begin(ctx)
			if err == nil {
				_, err = tx.Exec(ctx, "SELECT 1")
			}
			if err != nil {
				return txs, err
			}
			txs = append(txs, tx)
		}
		return txs, nil
	}
	txs, err := holdN(3, poolerDSN(p, pgtest.SuperUser, pgtest.SuperPassword, "capped"))
	if err == nil || len(txs) != 2 || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("max_db_connections 2: held %d, then %v", len(txs), err)
	}
	for _, tx := range txs {
		tx.Rollback(ctx)
	}
	// max_user_connections 1 for app_scram, over two databases.
	second := connect(t, poolerDSN(p, scramUser, scramPass, "capped"))
	txs, err = holdN(1, poolerDSN(p, scramUser, scramPass, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = second.Exec(ctx, "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("max_user_connections 1: a second server connection for the user: %v", err)
	}
	txs[0].Rollback(ctx)

	// The console shows the settings.
	admin := consoleConn(t, p)
	cols, rows := adminRows(t, admin, "SHOW DATABASES")
	row := func(cols []string, rows [][]string, key, val string) map[string]string {
		for _, r := range rows {
			m := map[string]string{}
			for i, c := range cols {
				m[c] = r[i]
			}
			if m[key] == val {
				return m
			}
		}
		t.Fatalf("no row with %s=%s in %v", key, val, rows)
		return nil
	}
	if r := row(cols, rows, "name", "appdb"); r["database"] != "pgha_real" || r["pool_size"] != "3" || r["pool_mode"] != "session" {
		t.Errorf("SHOW DATABASES appdb: %v", r)
	}
	if r := row(cols, rows, "name", "forced"); r["force_user"] != md5User {
		t.Errorf("SHOW DATABASES forced: %v", r)
	}
	if r := row(cols, rows, "name", "capped"); r["max_connections"] != "2" {
		t.Errorf("SHOW DATABASES capped: %v", r)
	}
	if r := row(cols, rows, "name", "postgres"); r["reserve_pool_size"] != "1" || r["reserve_pool"] != "1" {
		t.Errorf("SHOW DATABASES postgres: %v", r)
	}
	cols, rows = adminRows(t, admin, "SHOW USERS")
	if r := row(cols, rows, "name", md5User); r["pool_mode"] != "statement" || strings.TrimSpace(r["pool_size"]) != "2" {
		t.Errorf("SHOW USERS %s: %v", md5User, r)
	}
	if r := row(cols, rows, "name", scramUser); r["max_user_connections"] != "1" {
		t.Errorf("SHOW USERS %s: %v", scramUser, r)
	}
}

// testConsoleFigures: SHOW STATS and friends report real times, counts
// and averages; SHOW POOLS reports the oldest waiter's wait.
func testConsoleFigures(t *testing.T, pg *testPG) {
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.DefaultPoolSize = 1
		c.StatsPeriod = config.Duration(time.Second)
	})
	ctx := tctx(t)
	admin := consoleConn(t, p)
	a := connect(t, superDSN(p))
	b := connect(t, superDSN(p))
	// One transaction of ~200 ms with two queries, then simple queries.
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
		t.Fatal(err)
	}
	// b waits for the only server meanwhile: SHOW POOLS sees it.
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT 1")
		done <- err
	}()
	cols, rows := adminRows(t, admin, "SHOW POOLS")
	col := func(cols []string, name string) int { return colIndex(t, cols, name) }
	waitFor(t, 10*time.Second, "a waiting client with a maxwait", func() bool {
		cols, rows = adminRows(t, admin, "SHOW POOLS")
		for _, r := range rows {
			us, _ := strconv.Atoi(r[col(cols, "maxwait_us")])
			s, _ := strconv.Atoi(r[col(cols, "maxwait")])
			if r[col(cols, "cl_waiting")] == "1" && s*1000000+us >= 50000 {
				return true
			}
		}
		return false
	})
	if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := a.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	cols, rows = adminRows(t, admin, "SHOW STATS")
	want := strings.Fields(colsStats)
	for i, w := range want {
		want[i], _, _ = strings.Cut(w, ":")
	}
	if strings.Join(cols, " ") != strings.Join(want, " ") {
		t.Fatalf("SHOW STATS columns %v", cols)
	}
	r := map[string]int64{}
	for _, row := range rows {
		if row[0] == "postgres" {
			for i, c := range cols[1:] {
				r[c], _ = strconv.ParseInt(row[i+1], 10, 64)
			}
		}
	}
	if r["total_xact_time"] < 200000 || r["total_query_time"] < 200000 || r["total_wait_time"] < 50000 {
		t.Errorf("SHOW STATS times (us): xact %d, query %d, wait %d; want >= 200000, 200000, 50000", r["total_xact_time"], r["total_query_time"], r["total_wait_time"])
	}
	if r["total_query_count"] < 23 || r["total_xact_count"] < 22 || r["total_server_assignment_count"] < 22 || r["total_received"] == 0 || r["total_sent"] == 0 {
		t.Errorf("SHOW STATS counts: %v", r)
	}
	if r["total_requests"] != r["total_query_count"] {
		t.Errorf("total_requests %d, total_query_count %d", r["total_requests"], r["total_query_count"])
	}
	// Averages come with the next stats_period.
	waitFor(t, 10*time.Second, "SHOW STATS averages", func() bool {
		cols, rows = adminRows(t, admin, "SHOW STATS_AVERAGES")
		for _, row := range rows {
			if row[0] == "postgres" {
				q, _ := strconv.Atoi(row[col(cols, "query_count")])
				qt, _ := strconv.Atoi(row[col(cols, "query_time")])
				xt, _ := strconv.Atoi(row[col(cols, "xact_time")])
				return q > 0 && qt > 0 && xt > 0
			}
		}
		return false
	})
	wantCols := map[string]string{
		"STATS_TOTALS":   "database server_assignment_count xact_count query_count bytes_received bytes_sent xact_time query_time wait_time client_parse_count server_parse_count bind_count",
		"STATS_AVERAGES": "database server_assignment_count xact_count query_count bytes_received bytes_sent xact_time query_time wait_time avg_client_parse_count avg_server_parse_count avg_bind_count",
		"TOTALS":         "name value",
		"USERS":          "name pool_size reserve_pool_size pool_mode max_user_connections current_connections max_user_client_connections current_client_connections",
		"MEM":            "name size used free memtotal",
		"FDS":            "fd task user database addr port cancel link client_encoding std_strings datestyle timezone password scram_client_key scram_server_key",
		"STATE":          "key value",
		"CLIENTS":        strings.Join(strings.Fields(strings.NewReplacer(":i", "", ":q", "").Replace(colsSockets)), " "),
		"DATABASES":      "name host port database force_user pool_size min_pool_size reserve_pool_size server_lifetime pool_mode load_balance_hosts max_connections current_connections max_client_connections current_client_connections paused disabled reserve_pool",
	}
	for what, w := range wantCols {
		cols, rows := adminRows(t, admin, "SHOW "+what)
		if strings.Join(cols, " ") != w {
			t.Errorf("SHOW %s columns\n got %s\nwant %s", what, strings.Join(cols, " "), w)
		}
		if len(rows) == 0 {
			t.Errorf("SHOW %s: no rows", what)
		}
	}
	_, rows = adminRows(t, admin, "SHOW VERSION")
	if !strings.HasPrefix(rows[0][0], "PgBouncer 1.") {
		t.Errorf("SHOW VERSION %q", rows[0][0])
	}
	_, rows = adminRows(t, admin, "SHOW STATE")
	if rows[0][0] != "active" || rows[0][1] != "yes" {
		t.Errorf("SHOW STATE %v", rows)
	}

	// PAUSE db / RESUME db, DISABLE / ENABLE.
	adminRows(t, admin, "PAUSE postgres")
	paused := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, "SELECT 1")
		paused <- err
	}()
	select {
	case err := <-paused:
		t.Fatalf("a query ran while its database was paused (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	adminRows(t, admin, "RESUME postgres")
	if err := <-paused; err != nil {
		t.Fatalf("after RESUME postgres: %v", err)
	}
	if _, err := admin.Exec(ctx, "RESUME postgres").ReadAll(); err == nil || !strings.Contains(err.Error(), "is not paused") {
		t.Errorf("RESUME of a database not paused: %v", err)
	}
	adminRows(t, admin, "DISABLE postgres")
	_, err = pgx.Connect(ctx, superDSN(p))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Message != `database "postgres" is disabled` {
		t.Errorf("login to a disabled database: %v", err)
	}
	adminRows(t, admin, "ENABLE postgres")
	connect(t, superDSN(p))
	adminRows(t, admin, "RECONNECT postgres")
}
