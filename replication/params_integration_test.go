package replication_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/replication"
)

// TestClusterParametersRejected: cluster parameters Postgres refuses in
// any way (an unknown name, a value of the wrong type, out of range, or
// invalid for a setting Postgres reports under another case) are dropped
// before they reach a running server's reload or its next start; the
// rest apply. Settings pgha manages cannot be set in another case.
func TestClusterParametersRejected(t *testing.T) {
	n := pgtest.NewPrimary(t)
	ctx := testkit.Ctx(t, 3*time.Minute)
	in := n.Instance
	port := showValue(t, n, "SHOW port")
	wrote, err := in.ApplyClusterParameters(ctx, map[string]any{
		"work_mem":        "8MB",
		"no_such_setting": 1,              // unrecognized configuration parameter
		"max_connections": 0,              // outside the valid range
		"log_checkpoints": "maybe",        // requires a Boolean value
		"TimeZone":        "No/Such_Zone", // reported as "TimeZone", written as timezone
		"PORT":            1,              // pgha's own setting, in upper case
	})
	if err != nil {
		t.Fatal(err)
	}
	if wrote["work_mem"] != "8MB" {
		t.Fatalf("ApplyClusterParameters reports %v", wrote)
	}
	if got := showValue(t, n, "SHOW work_mem"); got != "8MB" {
		t.Fatalf("work_mem = %s after the reload, want 8MB", got)
	}
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postgresql.pgha.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"no_such_setting", "max_connections = '0'", "maybe", "No/Such_Zone", "port = '1'", "PORT"} {
		if strings.Contains(string(b), bad) {
			t.Errorf("postgresql.pgha.conf still holds %q:\n%s", bad, b)
		}
	}
	// The next start works with the same settings.
	if err := in.Restart(ctx); err != nil {
		t.Fatalf("restart after the rejected settings: %v", err)
	}
	if got := showValue(t, n, "SHOW work_mem"); got != "8MB" {
		t.Fatalf("work_mem = %s after the restart", got)
	}
	if got := showValue(t, n, "SHOW port"); got != port {
		t.Fatalf("port = %s, want %s", got, port)
	}

	// A stopped server is not written (Start does it).
	if err := in.Stop(ctx, replication.StopFast); err != nil {
		t.Fatal(err)
	}
	if _, err := in.ApplyClusterParameters(ctx, map[string]any{"work_mem": "16MB"}); !errors.Is(err, replication.ErrNotRunning) {
		t.Fatalf("ApplyClusterParameters on a stopped server: %v", err)
	}
	if err := in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := showValue(t, n, "SHOW work_mem"); got != "16MB" {
		t.Fatalf("work_mem = %s after the start, want 16MB", got)
	}
}

// showValue runs a one-value query on n.
func showValue(t *testing.T, n *pgtest.Node, sql string) string {
	t.Helper()
	c := n.Conn(t)
	ctx := testkit.Ctx(t, 10*time.Second)
	defer c.Close(ctx)
	var s string
	if err := c.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %s: %v", n.Name, sql, err)
	}
	return s
}
