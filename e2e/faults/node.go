package faults

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Credentials of the generated clusters.
const (
	superUser   = "postgres"
	superPass   = "faults-super"
	restUser    = "faults"
	restPass    = "faults-rest"
	scope       = "faults"
	pgBinDir    = "/usr/lib/postgresql/15/bin"
	pgPort      = 5432
	poolerPort  = 6432
	restAPIPort = 8008
)

// Node is one pgha node: the daemon (`pgha run`) in the host's namespace,
// and the Postgres it starts as the postgres OS user.
type Node struct {
	Name       string
	Host       *Host
	Dir        string
	DataDir    string
	ConfigPath string
	proc
}

// Timing is the cluster's HA timing (bootstrap.dcs).
type Timing struct {
	TTL, LoopWait, RetryTimeout time.Duration
}

// nodeConfig is one node's YAML.
func nodeConfig(n *Node, etcd []*EtcdMember, t Timing, sync bool) string {
	var eps []string
	for _, m := range etcd {
		eps = append(eps, fmt.Sprintf("%q", m.ClientURL()))
	}
	return fmt.Sprintf(`# written by the pgha fault suite
scope: %[1]s
namespace: /service/
name: %[2]s
etcd:
  endpoints: [%[3]s]
  dial_timeout: 2s
restapi:
  listen: %[4]s:%[5]d
  connect_address: %[4]s:%[5]d
  authentication: {username: %[6]s, password: %[7]s}
postgresql:
  listen: %[4]s:%[8]d
  connect_address: %[4]s:%[8]d
  data_dir: %[9]s
  bin_dir: %[10]s
  os_user: postgres
  parameters:
    fsync: "off"
    shared_buffers: 32MB
    max_connections: 150
    wal_receiver_status_interval: 1s
    cluster_name: %[2]s
  pg_hba:
    - host all all %[11]s.0/24 scram-sha-256
    - host replication replicator %[11]s.0/24 scram-sha-256
  authentication:
    superuser: {username: %[12]s, password: %[13]s}
    replication: {username: replicator, password: faults-repl}
    rewind: {username: rewind_user, password: faults-rewind}
  pg_ctl_timeout: 60s
pooler:
  listen: %[4]s:%[14]d
  admin_users: [postgres]
  query_wait_timeout: 60s
  server_connect_timeout: 3s
  server_login_retry: 1s
bootstrap:
  dcs:
    ttl: %[15]s
    loop_wait: %[16]s
    retry_timeout: %[17]s
    maximum_lag_on_failover: 1MB
    synchronous_mode: %[18]t
log:
  level: info
`, scope, n.Name, strings.Join(eps, ", "), n.Host.IP, restAPIPort, restUser, restPass, pgPort,
		n.DataDir, pgBinDir, subnet, superUser, superPass, poolerPort,
		t.TTL, t.LoopWait, t.RetryTimeout, sync)
}

// newNode prepares the node's directory (owned by postgres, so the
// daemon can create the data dir as that user) and config file.
func newNode(h *Host, dir, pghaBin string, etcd []*EtcdMember, t Timing, sync bool) (*Node, error) {
	n := &Node{Name: h.Name, Host: h, Dir: filepath.Join(dir, h.Name)}
	n.DataDir = filepath.Join(n.Dir, "data")
	n.ConfigPath = filepath.Join(dir, h.Name+".yml")
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := chownPostgres(n.Dir); err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.ConfigPath, []byte(nodeConfig(n, etcd, t, sync)), 0o600); err != nil {
		return nil, err
	}
	n.proc = proc{host: h, name: "pgha " + h.Name, logPath: filepath.Join(dir, h.Name+".log"),
		args: []string{pghaBin, "run", "-c", n.ConfigPath}}
	return n, nil
}

func chownPostgres(path string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("OS user postgres: %w (install postgresql-15: scripts/install-deps.sh)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// Start starts the daemon unless it runs.
func (n *Node) Start() error { return n.start() }

// DaemonPid is the daemon's pid, 0 when it is not running.
func (n *Node) DaemonPid() int { return n.pid() }

// PostmasterPid reads postmaster.pid; 0 when Postgres is not running.
func (n *Node) PostmasterPid() int {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// SignalPostmaster sends sig to the postmaster alone.
func (n *Node) SignalPostmaster(sig syscall.Signal) (int, error) {
	pid := n.PostmasterPid()
	if pid == 0 {
		return 0, fmt.Errorf("%s: postgres is not running", n.Name)
	}
	return pid, syscall.Kill(pid, sig)
}

// KillAll is kill -9 of every process in the node's namespace: the
// daemon, Postgres, and whatever else the daemon started.
func (n *Node) KillAll() error {
	err := KillAll(n.Host.NS)
	if werr := n.waitExit(10 * time.Second); werr != nil && err == nil {
		err = werr
	}
	return err
}

// StopPostgres stops the node's Postgres with pg_ctl (immediate mode,
// bounded), used in teardown so no shared memory is left behind.
func (n *Node) StopPostgres() {
	if n.PostmasterPid() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, "runuser", "-u", "postgres", "--", filepath.Join(pgBinDir, "pg_ctl"),
		"stop", "-D", n.DataDir, "-m", "immediate", "-w", "-t", "15").Run()
}

// DSN is a superuser URL for the node's Postgres.
func (n *Node) DSN() string { return pgURL(n.Host.IP, pgPort) }

// PoolerDSN is the same through the node's pooler.
func (n *Node) PoolerDSN() string { return pgURL(n.Host.IP, poolerPort) }

func pgURL(host string, port int) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(superUser, superPass),
		Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/postgres",
		RawQuery: "sslmode=disable&connect_timeout=2"}
	return u.String()
}

// connConfig parses dsn and makes every connection originate from the
// client host.
func connConfig(from *Host, dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.DialFunc = from.Dial
	return cfg, nil
}
