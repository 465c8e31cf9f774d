package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

func putGet(t *testing.T, endpoints []string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := testkit.Ctx(t, 30*time.Second)
	// Right after a member dies a put may time out until a new leader
	// is elected: retry within the bound.
	testkit.Eventually(t, 30*time.Second, "a put accepted", func() error {
		_, err := cli.Put(ctx, "/pgtest/k", "v")
		return err
	})
	resp, err := cli.Get(ctx, "/pgtest/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}

func TestStartEtcd(t *testing.T) {
	putGet(t, pgtest.StartEtcd(t))
}

// TestStartEtcdBinaryCluster: a cluster of etcd processes works with a
// member down, and none of its processes outlives the test that
// started it.
func TestStartEtcdBinaryCluster(t *testing.T) {
	pgtest.SkipIfShort(t, "etcd")
	var dir string
	t.Run("cluster", func(t *testing.T) {
		c := pgtest.StartEtcdBinaryCluster(t, 3)
		dir = filepath.Dir(c.Members[0].DataDir)
		putGet(t, c.Endpoints())
		// One member down: the other two keep a quorum.
		c.Members[0].Kill()
		putGet(t, c.Endpoints()[1:])
		if n := len(testkit.ProcessesUnder(dir)); n != 2 {
			t.Fatalf("%d etcd processes under %s, want the 2 left running", n, dir)
		}
	})
	if left := testkit.ProcessesUnder(dir); len(left) != 0 {
		t.Fatalf("etcd processes outlived their test: %v", left)
	}
}

func TestNewPrimary(t *testing.T) {
	pgtest.SkipIfShort(t, "Postgres")
	var dataDir string
	var inst interface{ IsRunning() bool }
	t.Run("node", func(t *testing.T) {
		n := pgtest.NewPrimary(t)
		dataDir, inst = n.DataDir, n.Instance
		c := n.Conn(t)
		var user string
		var ssl bool
		if err := c.QueryRow(context.Background(), "SELECT current_user, current_setting('data_checksums') = 'on'").Scan(&user, &ssl); err != nil {
			t.Fatal(err)
		}
		if user != pgtest.SuperUser || !ssl {
			t.Fatalf("user %s checksums %v", user, ssl)
		}
		n.Exec(t, "CREATE TABLE t (x int)")
		st, err := os.Stat(filepath.Dir(dataDir))
		if err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 && st.Sys().(*syscall.Stat_t).Uid == 0 {
			t.Fatalf("%s is owned by root", filepath.Dir(dataDir))
		}
	})
	if inst.IsRunning() {
		t.Fatal("postgres still running after the subtest's cleanup")
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("data dir %s not removed: %v", dataDir, err)
	}
}
