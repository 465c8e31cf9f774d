package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/internal/pgtest"
)

func putGet(t *testing.T, endpoints []string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Right after a member dies a put may time out until a new leader
	// is elected: retry within the bound.
	for {
		_, err := cli.Put(ctx, "/pgtest/k", "v")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := cli.Get(ctx, "/pgtest/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}

func TestStartEtcd(t *testing.T) {
	putGet(t, pgtest.StartEtcd(t))
}

func TestStartEtcdBinaryCluster(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := pgtest.StartEtcdBinaryCluster(t, 3)
		putGet(t, c.Endpoints())
		// One member down: the other two keep a quorum.
		c.Members[0].Kill()
		putGet(t, c.Endpoints()[1:])
		out, _ := exec.Command("pgrep", "-f", "initial-cluster-token pgtest").Output()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			for _, ch := range f {
				pid = pid*10 + int(ch-'0')
			}
			pids = append(pids, pid)
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			// Could be another package's etcd; only fail if it is ours.
			b, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "cmdline"))
			if strings.Contains(string(b), "etcd") && strings.Contains(string(b), os.TempDir()) {
				t.Logf("etcd pid %d still alive after cleanup: %q", pid, b)
			}
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
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

func TestFreePortUnique(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p := pgtest.FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if _, err := os.Stat(filepath.Join("/tmp/pgtest-ports", itoa(p))); err != nil {
			t.Fatalf("port %d not reserved: %v", p, err)
		}
	}
}
