package pooler

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// testPG is one Postgres shared by the integration tests of this package.
type testPG struct {
	node     *pgtest.Node
	userlist string
}

var (
	pgOnce sync.Once
	pgInst *testPG
	pgErr  error
)

// Roles the tests create, with their passwords.
const (
	scramUser = "app_scram"
	scramPass = "scram-secret"
	md5User   = "app_md5"
	md5Pass   = "md5-secret"
)

// sharedPG starts Postgres once for the whole package (it is torn down by
// the first test's cleanup; later tests start their own if needed).
func newPG(t *testing.T) *testPG {
	t.Helper()
	cfg := pgtest.Config(t, "poolpg")
	cfg.PgHBA = []string{"host all all 127.0.0.1/32 md5"}
	cfg.Parameters["max_connections"] = "120"
	n := pgtest.NewNodeFromConfig(t, "poolpg", cfg)
	n.Instance.AllowLocalPasswords() // for testServerSocket
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := n.Instance.Init(ctx); err != nil {
		t.Fatalf("init postgres: %v", err)
	}
	n.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", scramUser, scramPass))
	n.Exec(t, fmt.Sprintf("SET password_encryption = 'md5'; CREATE ROLE %s LOGIN PASSWORD '%s'", md5User, md5Pass))
	n.Exec(t, "CREATE TABLE IF NOT EXISTS items (id int primary key, name text)")
	n.Exec(t, "GRANT ALL ON items TO "+scramUser+", "+md5User)

	// auth_file: the superuser in plain text, the SCRAM role by its secret
	// from pg_authid (so logins use the client's proof), md5 by its hash.
	conn := n.Conn(t)
	var scramSecret string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", scramUser).Scan(&scramSecret); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ul := filepath.Join(dir, "userlist.txt")
	body := fmt.Sprintf("; test users\n%q %q\n%q %q\n%q %q\n\"admin\" \"adminpw\"\n",
		pgtest.SuperUser, pgtest.SuperPassword, scramUser, scramSecret, md5User, md5Password(md5User, md5Pass))
	if err := os.WriteFile(ul, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testPG{node: n, userlist: ul}
}

// testPooler runs a pooler in front of pg until the test ends.
func startPooler(t *testing.T, pg *testPG, mod func(*config.Pooler)) *Pooler {
	t.Helper()
	return startPoolerRouted(t, pg, NewStaticRouter(pg.node.Addr()), mod)
}

func startPoolerRouted(t *testing.T, pg *testPG, router Router, mod func(*config.Pooler)) *Pooler {
	t.Helper()
	return startPoolerHooked(t, pg, router, mod, nil)
}

// startPoolerHooked is startPoolerRouted with test hooks installed
// before the pooler runs.
func startPoolerHooked(t *testing.T, pg *testPG, router Router, mod func(*config.Pooler), hooks func(*Pooler)) *Pooler {
	t.Helper()
	cfg := config.DefaultPooler()
	cfg.Listen = "127.0.0.1:0"
	cfg.AuthFile = pg.userlist
	cfg.DefaultPoolSize = 2
	cfg.QueryWaitTimeout = config.Duration(10 * time.Second)
	cfg.ServerConnectTimeout = config.Duration(5 * time.Second)
	cfg.AdminUsers = []string{"admin"}
	cfg.StatsUsers = []string{"stats"}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg, router, pgtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if hooks != nil {
		hooks(p)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pooler Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Errorf("pooler Run did not return within 10s of cancel; goroutines:\n%s", b.String())
		}
	})
	return p
}

// dsn is a URL for user through the pooler.
func poolerDSN(p *Pooler, user, pass, db string) string {
	u := url.URL{Scheme: "postgres", Host: p.Addr(), Path: "/" + db,
		RawQuery: "sslmode=disable&connect_timeout=5", User: url.UserPassword(user, pass)}
	return u.String()
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect through pooler: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// colIndex is the index of the column called name in an admin console
// answer's columns; the test fails when there is none.
func colIndex(t *testing.T, cols []string, name string) int {
	t.Helper()
	for i, c := range cols {
		if c == name {
			return i
		}
	}
	t.Fatalf("no column %s in %v", name, cols)
	return -1
}
