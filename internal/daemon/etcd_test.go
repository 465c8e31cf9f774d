package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testcert"
	"github.com/pgha/pgha/internal/testkit"
)

// waitBootstrapped waits until n's own view (through its own etcd
// client) shows it as the running primary of a new cluster, and a write
// goes through.
func waitBootstrapped(t *testing.T, tc *daemontest.Cluster, n *daemontest.Node) {
	t.Helper()
	tc.WaitFor(2*time.Minute, n.Name+" bootstrapped", func() string {
		v, ok := n.D.View()
		if !ok {
			return "no view from etcd"
		}
		m, found := v.Member(n.Name)
		if v.Leader != n.Name || !found || m.Role != cluster.RolePrimary || m.State != cluster.StateRunning {
			return fmt.Sprintf("leader %q, member %+v", v.Leader, m)
		}
		return ""
	})
	n.Exec("CREATE TABLE bootstrapped (id int)")
}

// TestDaemonEtcdTLS: the daemon reaches an etcd that takes clients over
// TLS only, with client certificates, through etcd.cacert/cert/key.
func TestDaemonEtcdTLS(t *testing.T) {
	pgtest.RequireUser(t)
	cert, key, _ := testcert.Write(t)
	urls := pgtest.StartEtcdWith(t, pgtest.EtcdOptions{CertFile: cert, KeyFile: key, CAFile: cert})
	tc := daemontest.New(t, 1, daemontest.Options{Endpoints: urls, Edit: func(i int, c *config.Config) {
		c.Etcd.CACert, c.Etcd.Cert, c.Etcd.Key = cert, cert, key
	}})
	n := tc.Nodes[0]
	n.Start()
	waitBootstrapped(t, tc, n)
}

// TestDaemonEtcdAuth: the daemon reaches an etcd with authentication on
// through etcd.username and etcd.password (leases, watches and fenced
// transactions included).
func TestDaemonEtcdAuth(t *testing.T) {
	pgtest.RequireUser(t)
	urls := pgtest.StartEtcdWith(t, pgtest.EtcdOptions{RootPassword: "etcd pw'\\"})
	tc := daemontest.New(t, 1, daemontest.Options{Endpoints: urls, Edit: func(i int, c *config.Config) {
		c.Etcd.Username, c.Etcd.Password = "root", "etcd pw'\\"
	}})
	n := tc.Nodes[0]
	n.Start()
	waitBootstrapped(t, tc, n)
}

// TestEmbeddedEtcdDefaultDataDir: with etcd.embedded and no
// etcd.data_dir, the embedded etcd keeps its data in <name>.etcd beside
// the data directory, and a parent it creates on the way stays
// traversable for the postgres OS user: the node bootstraps.
func TestEmbeddedEtcdDefaultDataDir(t *testing.T) {
	pgtest.RequireUser(t)
	var parent, etcdDir string
	tc := daemontest.New(t, 1, daemontest.Options{Endpoints: []string{"unused:1"}, Edit: func(i int, c *config.Config) {
		parent = filepath.Join(filepath.Dir(c.PostgreSQL.DataDir), "not", "yet")
		c.PostgreSQL.DataDir = filepath.Join(parent, "data")
		c.Etcd.Embedded = true
		c.Etcd.DataDir = ""
		c.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))}
		etcdDir = config.DefaultEtcdDataDir(c.PostgreSQL.DataDir, c.Name)
	}})
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("%s exists before the start: %v", parent, err)
	}
	n := tc.Nodes[0]
	n.Start()
	waitBootstrapped(t, tc, n)
	for dir, mode := range map[string]os.FileMode{parent: 0o755, filepath.Dir(parent): 0o755, etcdDir: 0o700} {
		st, err := os.Lstat(dir)
		if err != nil || !st.IsDir() || st.Mode().Perm() != mode || int(st.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
			t.Errorf("%s: %v (want a directory of ours with mode %v): %v", dir, st.Mode(), mode, err)
		}
	}
	if filepath.Dir(etcdDir) != parent {
		t.Errorf("embedded etcd data in %s, want beside the data directory in %s", etcdDir, parent)
	}
}
