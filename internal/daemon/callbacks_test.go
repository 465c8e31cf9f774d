package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/leader"
)

// TestCallbacks: postgresql.callbacks scripts run with Patroni's arguments
// (action, role, scope) when Postgres starts, stops, restarts and changes
// role across a switchover.
func TestCallbacks(t *testing.T) {
	dir := t.TempDir()
	logOf := func(i int) string { return filepath.Join(dir, "calls", string(rune('1'+i))) }
	if err := os.MkdirAll(filepath.Join(dir, "calls"), 0o755); err != nil {
		t.Fatal(err)
	}
	tc := daemontest.New(t, 2, daemontest.Options{Edit: func(i int, c *config.Config) {
		cb := filepath.Join(dir, "cb"+string(rune('1'+i))+".sh")
		if err := os.WriteFile(cb, []byte("#!/bin/sh\necho \"$@\" >> "+logOf(i)+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		c.PostgreSQL.Callbacks = config.Callbacks{OnStart: cb, OnStop: cb, OnRestart: cb, OnRoleChange: cb}
	}})
	calls := func(i int) string { b, _ := os.ReadFile(logOf(i)); return string(b) }
	n1, n2 := tc.Nodes[0], tc.Nodes[1]
	n1.Start()
	tc.WaitHealthy(2*time.Minute, "node1")
	n2.Start()
	tc.WaitHealthy(2 * time.Minute)
	expect := func(i int, want string) {
		t.Helper()
		tc.WaitFor(30*time.Second, "callbacks of node"+string(rune('1'+i)), func() string {
			if got := calls(i); got != want {
				return "calls so far:\n" + got + "want:\n" + want
			}
			return ""
		})
	}
	expect(0, "on_start primary e2e\n")
	expect(1, "on_start replica e2e\n")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := leader.RequestFailover(ctx, n1.D.Client(), "/service/", daemontest.Scope, cluster.Failover{Leader: "node1", Member: "node2"}); err != nil {
		t.Fatal(err)
	}
	tc.WaitFor(60*time.Second, "node2 leads", func() string {
		if v := tc.View(); v.Leader != "node2" || v.Failover != nil {
			return "leader " + v.Leader
		}
		return ""
	})
	tc.WaitHealthy(2 * time.Minute)
	expect(0, "on_start primary e2e\non_stop primary e2e\non_role_change replica e2e\n")
	expect(1, "on_start replica e2e\non_role_change primary e2e\n")

	if err := n2.D.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	expect(1, "on_start replica e2e\non_role_change primary e2e\non_restart primary e2e\n")
	if strings.Contains(calls(1), "on_stop") {
		t.Fatal("a restart through the API reported a stop")
	}
}
