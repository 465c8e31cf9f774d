package pooler

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testcert"
)

// testClientTLS: sslmode=require on the pooler: TLS clients work, plain
// ones are refused.
func testClientTLS(t *testing.T, pg *testPG) {
	cert, key, _ := testcert.Write(t)
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.ClientTLS = config.ClientTLS{SSLMode: "require", CertFile: cert, KeyFile: key}
	})
	ctx := tctx(t)
	dsn := strings.Replace(superDSN(p), "sslmode=disable", "sslmode=require", 1)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	defer c.Close(ctx)
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, superDSN(p)); err == nil || !strings.Contains(err.Error(), "SSL required") {
		t.Fatalf("plain connection with sslmode=require on the pooler: want refusal, got %v", err)
	}
}

// testHostSSL: hostssl rules match only TLS clients and hostnossl only
// plain ones, as in pg_hba.conf.
func testHostSSL(t *testing.T, pg *testPG) {
	cert, key, _ := testcert.Write(t)
	p := startPooler(t, pg, func(c *config.Pooler) {
		c.ClientTLS = config.ClientTLS{SSLMode: "prefer", CertFile: cert, KeyFile: key}
		c.HBA = []string{
			"hostssl all all 127.0.0.1/32 scram-sha-256",
			"hostnossl all all 127.0.0.1/32 reject",
		}
	})
	ctx := tctx(t)
	dsn := strings.Replace(superDSN(p), "sslmode=disable", "sslmode=require", 1)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("TLS client under a hostssl rule: %v", err)
	}
	c.Close(ctx)
	_, err = pgx.Connect(ctx, superDSN(p))
	if pgCode(err) != codeInvalidAuthSpec || !strings.Contains(err.Error(), "no hba rule") {
		t.Fatalf("plain client under hostssl/hostnossl-reject rules: want 28000 no hba rule, got %v", err)
	}
}
