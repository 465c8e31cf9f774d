package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/replication"
)

func TestRunRejectsBadConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"pgha", "run", "-c", "../../testdata/bad-unknown-key-ttl.yml"}, &out, &errOut)
	if err == nil || exitCode(err) != 2 {
		t.Fatalf("err = %v (code %d), want exit 2", err, exitCode(err))
	}
	if !strings.Contains(errOut.String(), "postgresql.lisen") || !strings.Contains(errOut.String(), "bootstrap.dcs.ttl") {
		t.Fatalf("stderr does not name the problems:\n%s", errOut.String())
	}
}

// TestRunEmbeddedEtcdSighupAndStop: `pgha run -c FILE` with etcd.embedded
// bootstraps a one-node cluster; SIGHUP re-reads FILE (new tags show in
// the member key); cancelling (what SIGTERM does in main) stops it cleanly.
func TestRunEmbeddedEtcdSighupAndStop(t *testing.T) {
	c := config.Default()
	c.Scope, c.Name = "runtest", "run1"
	c.PostgreSQL = pgtest.Config(t, "run1")
	endpoint := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	c.Etcd.Endpoints = []string{endpoint}
	c.Etcd.Embedded = true
	c.Etcd.DataDir = filepath.Join(t.TempDir(), "etcd")
	c.RESTAPI.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	c.RESTAPI.ConnectAddress = c.RESTAPI.Listen
	c.Pooler.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	c.Log.Level = "debug"
	node := pgtest.NewNodeFromConfig(t, "run1", c.PostgreSQL) // teardown if the test fails
	path := filepath.Join(t.TempDir(), "run1.yml")
	writeYAML(t, path, c)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testkit.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"pgha", "run", "-c", path}, &out, &errOut) }()

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	member := func() (cluster.View, cluster.Member) {
		select {
		case err := <-done:
			t.Fatalf("pgha run ended early: %v; daemon log:\n%s", err, errOut.String())
		default:
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		v, _ := leader.ReadView(rctx, cli, "/service/", "runtest")
		m, _ := v.Member("run1")
		return v, m
	}
	testkit.Eventually(t, 2*time.Minute, "run1 leads as primary", func() error {
		v, m := member()
		return testkit.Missing(v.Leader == "run1" && m.Role == cluster.RolePrimary, "daemon log:\n"+errOut.String())
	})

	c.Tags.NoLoadBalance = true
	writeYAML(t, path, c)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "reloaded tags in the member key", func() error {
		_, m := member()
		return testkit.Missing(m.Tags.NoLoadBalance, "daemon log:\n"+errOut.String())
	})

	// A reload re-reads the whole file: Postgres settings apply with a
	// Postgres reload, and one that needs a restart shows as
	// pending_restart; a key only a daemon restart applies is named.
	c.PostgreSQL.Parameters["work_mem"] = "12MB"
	c.PostgreSQL.Parameters["max_connections"] = 61
	c.Log.Level = "info"
	c.Watchdog.Mode = "off"
	writeYAML(t, path, c)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "reloaded postgres settings", func() error {
		_, m := member()
		return testkit.Missing(m.PendingRestart && showSetting(t, node, "work_mem") == "12MB" && strings.Contains(errOut.String(), "need a restart"), "daemon log:\n"+errOut.String())
	})
	if !strings.Contains(errOut.String(), "watchdog") {
		t.Fatalf("the reload does not name watchdog as needing a restart:\n%s", errOut.String())
	}

	// SIGUSR2 detaches: pgha exits 75 and leaves the primary running; a
	// new run adopts it (same postmaster, same leader, no switchover).
	pid := replication.PostmasterPID(c.PostgreSQL.DataDir)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if exitCode(err) != ExitDetached {
			t.Fatalf("run after SIGUSR2: %v (exit %d), want exit %d", err, exitCode(err), ExitDetached)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pgha run did not detach")
	}
	if got := replication.PostmasterPID(c.PostgreSQL.DataDir); got == 0 || got != pid {
		t.Fatalf("postmaster %d after detaching, want %d still running; daemon log:\n%s", got, pid, errOut.String())
	}
	go func() { done <- run(ctx, []string{"pgha", "run", "-c", path}, &out, &errOut) }()
	testkit.Eventually(t, time.Minute, "the next run leads with its own lease", func() error {
		v, m := member()
		return testkit.Missing(v.Leader == "run1" && m.Role == cluster.RolePrimary && strings.Contains(errOut.String(), "action=adopt_leader"), "daemon log:\n"+errOut.String())
	})
	if got := replication.PostmasterPID(c.PostgreSQL.DataDir); got != pid {
		t.Fatalf("postmaster %d after the next run adopted it, want the same %d", got, pid)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("pgha run did not stop")
	}
	if node.Instance.IsRunning() {
		t.Fatal("postgres still runs after pgha run stopped")
	}
	if !strings.Contains(errOut.String(), "configuration reloaded") {
		t.Fatalf("no reload line in the log:\n%s", errOut.String())
	}
}

func writeYAML(t *testing.T, path string, c config.Config) {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// showSetting reads one setting from the node, "" when it cannot.
func showSetting(t *testing.T, n *pgtest.Node, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN(pgtest.SuperUser, "postgres"))
	if err != nil {
		return ""
	}
	defer c.Close(context.Background())
	var v string
	if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return ""
	}
	return v
}
