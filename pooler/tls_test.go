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
