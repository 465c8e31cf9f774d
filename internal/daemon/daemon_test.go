package daemon_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

func TestTargetsOf(t *testing.T) {
	m := func(name string, role cluster.Role, state cluster.State, port int, nolb bool) cluster.Member {
		return cluster.Member{Name: name, Role: role, State: state, ConnURL: fmt.Sprintf("postgres://127.0.0.1:%d/postgres", port), Tags: config.Tags{NoLoadBalance: nolb}}
	}
	rows := []struct {
		name string
		v    cluster.View
		want daemon.Targets
	}{
		{"no members", cluster.View{}, daemon.Targets{}},
		{"leader and replicas", cluster.View{Leader: "a", Members: []cluster.Member{
			m("a", cluster.RolePrimary, cluster.StateRunning, 1, false),
			m("b", cluster.RoleReplica, cluster.StateStreaming, 2, false),
			m("c", cluster.RoleReplica, cluster.StateRunning, 3, false),
		}}, daemon.Targets{Primary: "127.0.0.1:1", Replicas: []string{"127.0.0.1:2", "127.0.0.1:3"}}},
		{"a primary without the leader key is no target", cluster.View{Leader: "", Members: []cluster.Member{
			m("a", cluster.RolePrimary, cluster.StateRunning, 1, false),
		}}, daemon.Targets{}},
		{"stopped and noloadbalance replicas are skipped", cluster.View{Leader: "a", Members: []cluster.Member{
			m("a", cluster.RolePrimary, cluster.StateRunning, 1, false),
			m("b", cluster.RoleReplica, cluster.StateStopped, 2, false),
			m("c", cluster.RoleReplica, cluster.StateStreaming, 3, true),
		}}, daemon.Targets{Primary: "127.0.0.1:1"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			if got := daemon.TargetsOf(r.v); !reflect.DeepEqual(got, r.want) {
				t.Fatalf("TargetsOf = %+v, want %+v", got, r.want)
			}
		})
	}
}

// TestEmbeddedEtcdSingleNode: etcd.embedded runs a single-member etcd in
// the daemon; one node bootstraps, leads, accepts writes, and stops
// cleanly (Postgres stopped, leader key released).
func TestEmbeddedEtcdSingleNode(t *testing.T) {
	c := config.Default()
	c.Scope = "solo"
	c.Name = "solo1"
	c.PostgreSQL = pgtest.Config(t, "solo1")
	c.Etcd.Embedded = true
	c.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))}
	c.Etcd.DataDir = filepath.Join(t.TempDir(), "etcd")
	c.RESTAPI.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	c.RESTAPI.ConnectAddress = c.RESTAPI.Listen
	node := pgtest.NewNodeFromConfig(t, "solo1", c.PostgreSQL) // teardown + helpers

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.New(ctx, c, pgtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testkit.Eventually(t, 2*time.Minute, "solo1 leads", func() error {
		v, ok := d.View()
		m, _ := v.Member("solo1")
		return testkit.Missing(ok && v.Leader == "solo1" && m.Role == cluster.RolePrimary && d.LoopInfo().IsLeader,
			fmt.Sprintf("view %+v ok %v", v, ok))
	})
	node.Exec(t, "CREATE TABLE t (x int)")
	if tg := d.Targets(); tg.Primary != c.PostgreSQL.ConnectAddress {
		t.Fatalf("targets = %+v, want primary %s", tg, c.PostgreSQL.ConnectAddress)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if node.Instance.IsRunning() {
		t.Fatal("postgres still runs after a clean stop")
	}
}
