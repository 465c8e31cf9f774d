package pooler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// testAuthQuery: a user missing from auth_file is looked up with
// auth_query as auth_user; its SCRAM secret from pg_shadow lets the pooler
// log in with the client's proof. Also idle_transaction_timeout and
// min_pool_size.
func testAuthQuery(t *testing.T, pg *testPG) {
	pg.node.Exec(t, "CREATE ROLE app_q LOGIN PASSWORD 'q-secret'")
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.AuthUser = pgtest.SuperUser
		c.AuthQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
		c.IdleTransactionTimeout = config.Duration(1500 * time.Millisecond)
		c.MinPoolSize = 2
	})
	ctx := tctx(t)
	c := connect(t, poolerDSN(p, "app_q", "q-secret", "postgres"))
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != "app_q" {
		t.Fatalf("auth_query user: %q %v", who, err)
	}
	_, err := pgconn.Connect(ctx, poolerDSN(p, "app_q", "wrong", "postgres"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("auth_query wrong password: want 28P01, got %v", err)
	}
	// min_pool_size: the maintenance tick opens a second connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, idle, _, total := p.getPool(poolKey{db: "postgres", user: "app_q"}).counts()
		if total >= 2 && idle >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("min_pool_size 2 not reached: total %d idle %d", total, idle)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// idle_transaction_timeout closes a client idle inside a transaction.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	_, err = tx.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("transaction survived idle_transaction_timeout")
	}
	if !strings.Contains(err.Error(), "idle transaction timeout") && !strings.Contains(err.Error(), "closed") && !strings.Contains(err.Error(), "EOF") {
		t.Logf("error after idle_transaction_timeout: %v", err)
	}
}

func TestHBA(t *testing.T) {
	rules, err := parseHBA([]string{
		"host all bad 0.0.0.0/0 reject",
		"host app all 127.0.0.1 trust",
		"host all all 127.0.0.0/8 scram-sha-256",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := fuzzPooler(t)
	p.hba = rules
	c := &client{p: p, conn: &byteConn{}}
	for _, tc := range []struct{ db, user, want string }{
		{"app", "x", "trust"}, {"other", "x", "scram-sha-256"}, {"app", "bad", ""},
	} {
		got, err := p.hbaMethod(c, tc.db, tc.user)
		if got != tc.want || (tc.want == "" && err == nil) {
			t.Errorf("hba(%s,%s) = %q, %v; want %q", tc.db, tc.user, got, err, tc.want)
		}
	}
	if _, err := parseHBA([]string{"host all all nowhere md5"}); err == nil {
		t.Error("bad address accepted")
	}
}
