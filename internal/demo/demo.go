package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/leader"
)

// Password is the demo superuser's password.
const Password = "pgha-demo"

// Scope is the demo cluster's scope.
const Scope = "demo"

// Options configure a demo cluster.
type Options struct {
	// Dir holds configs (Dir/<name>.yml), data (Dir/<name>/data) and logs.
	Dir string
	// Nodes is the number of nodes (default 3).
	Nodes int
	// BasePort B: node i's Postgres on B+i, REST API on B+100+i, pooler on
	// B+200+i, read-only pooler on B+300+i, etcd clients on B+400.
	BasePort int
	// Exe is the pgha binary to run for each node (default: this one).
	Exe string
	// Out receives the member table; Log the demo's own progress.
	Out io.Writer
	Log *slog.Logger
}

// Validate fills defaults and checks the options.
func (o *Options) Validate() error {
	if o.Dir == "" {
		return errors.New("demo: --dir is required: the directory for configs, data and logs")
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > 9 {
		return fmt.Errorf("demo: --nodes %d: use 1 to 9", o.Nodes)
	}
	if o.BasePort == 0 {
		o.BasePort = 15430
	}
	if o.BasePort < 1024 || o.BasePort+400 > 65535 {
		return fmt.Errorf("demo: --base-port %d: use 1024..65135 (the demo uses base..base+400)", o.BasePort)
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("demo: find the pgha binary: %w", err)
		}
		o.Exe = exe
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return nil
}

// Node names are node1..nodeN.
func nodeName(i int) string { return "node" + strconv.Itoa(i) }

// Run runs the demo until ctx ends, then stops every node and etcd.
func Run(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := prepareDir(dir); err != nil {
		return err
	}
	etcdAddr := fmt.Sprintf("127.0.0.1:%d", o.BasePort+400)
	peerAddr := fmt.Sprintf("127.0.0.1:%d", o.BasePort+401)
	e, err := daemon.StartEmbeddedEtcd(ctx, filepath.Join(dir, "etcd"), "demo", etcdAddr, peerAddr, 30*time.Second)
	if err != nil {
		return err
	}
	defer e.Close()
	o.Log.Info("demo: etcd running", "endpoint", e.ClientURL)
	// The poolers' users, PgBouncer's userlist.txt format.
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, []byte(fmt.Sprintf("%q %q\n", "postgres", Password)), 0o600); err != nil {
		return fmt.Errorf("demo: write %s: %w", userlist, err)
	}
	for i := 1; i <= o.Nodes; i++ {
		if err := writeConfig(dir, i, o.BasePort, e.ClientURL); err != nil {
			return err
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("demo: etcd client: %w", err)
	}
	defer cli.Close()

	g, gctx := errgroup.WithContext(ctx)
	for i := 1; i <= o.Nodes; i++ {
		c := &child{name: nodeName(i), exe: o.Exe, dir: dir, log: o.Log}
		g.Go(func() error { return c.supervise(gctx) })
	}
	g.Go(func() error {
		if err := waitHealthy(gctx, cli, o.Nodes); err != nil {
			return nil // ctx ended
		}
		v, _ := leader.ReadView(gctx, cli, "/service/", Scope)
		printTable(o.Out, v, o, e.ClientURL, dir)
		return nil
	})
	return g.Wait()
}

func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo: create %s: %w", dir, err)
	}
	// The postgres OS user must be able to reach the data dirs.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("demo: chmod %s: %w", dir, err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return fmt.Errorf("demo: OS user postgres: %w (install postgresql-15: scripts/install-deps.sh)", err)
	}
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("demo: %s is not traversable by the postgres user (mode %v): pick a --dir under /tmp or chmod o+x %s", p, st.Mode().Perm(), p)
		}
	}
	return nil
}

func writeConfig(dir string, i, base int, etcdURL string) error {
	name := nodeName(i)
	nodeDir := filepath.Join(dir, name)
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return fmt.Errorf("demo: create %s: %w", nodeDir, err)
	}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(nodeDir, uid, gid); err != nil {
				return fmt.Errorf("demo: chown %s: %w", nodeDir, err)
			}
		}
	}
	yml := fmt.Sprintf(`# pgha demo node %[1]s (written by pgha demo)
scope: %[2]s
namespace: /service/
name: %[1]s
etcd:
  endpoints: [%[3]q]
restapi:
  listen: 127.0.0.1:%[5]d
postgresql:
  listen: 127.0.0.1:%[4]d
  data_dir: %[8]s
  parameters:
    max_connections: 100
    shared_buffers: 64MB
    cluster_name: %[1]s
    wal_receiver_status_interval: 1s
  authentication:
    superuser: {username: postgres, password: %[9]s}
    replication: {username: replicator, password: %[9]s-repl}
    rewind: {username: rewind_user, password: %[9]s-rewind}
pooler:
  listen: 127.0.0.1:%[6]d
  read_only_listen: 127.0.0.1:%[7]d
  auth_file: %[10]s
  admin_users: [postgres]
bootstrap:
  dcs:
    ttl: 10s
    loop_wait: 1s
    retry_timeout: 3s
    maximum_lag_on_failover: 1MB
log:
  level: info
`, name, Scope, etcdURL, base+i, base+100+i, base+200+i, base+300+i, filepath.Join(nodeDir, "data"), Password,
		filepath.Join(dir, "userlist.txt"))
	path := filepath.Join(dir, name+".yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	return nil
}

// child supervises one `pgha run` process.
type child struct {
	name, exe, dir string
	log            *slog.Logger
}

// supervise runs the child, restarting it a second after it dies, until
// ctx ends; then it sends SIGTERM and waits (SIGKILL after a minute).
func (c *child) supervise(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := c.runOnce(ctx); err != nil {
			c.log.Warn("demo: node exited; restarting it", "node", c.name, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (c *child) runOnce(ctx context.Context) error {
	logPath := filepath.Join(c.dir, c.name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("demo: open %s: %w", logPath, err)
	}
	defer lf.Close()
	cmd := exec.Command(c.exe, "run", "-c", filepath.Join(c.dir, c.name+".yml"))
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("demo: start %s: %w", c.name, err)
	}
	pidPath := filepath.Join(c.dir, c.name+".pid")
	_ = os.WriteFile(pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return fmt.Errorf("%s exited: %v (log: %s)", c.name, err, logPath)
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	_ = os.Remove(pidPath)
	return nil
}

// waitHealthy waits until a leader runs as primary and n members run.
func waitHealthy(ctx context.Context, cli *clientv3.Client, n int) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		v, err := leader.ReadView(rctx, cli, "/service/", Scope)
		cancel()
		if err == nil && v.Leader != "" {
			running := 0
			for _, m := range v.Members {
				if m.State == cluster.StateRunning || m.State == cluster.StateStreaming {
					running++
				}
			}
			if running == n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printTable(w io.Writer, v cluster.View, o Options, etcdURL, dir string) {
	fmt.Fprintf(w, "\npgha demo cluster %q is up (etcd %s, dir %s)\n\n", Scope, etcdURL, dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tSTATE\tTL\tPOSTGRES\tREST API\tPOOLER (rw / ro)")
	for i := 1; i <= o.Nodes; i++ {
		name := nodeName(i)
		m, _ := v.Member(name)
		role := string(m.Role)
		if name == v.Leader {
			role = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t127.0.0.1:%d\thttp://127.0.0.1:%d\t%d / %d\n",
			name, role, m.State, m.Timeline, o.BasePort+i, o.BasePort+100+i, o.BasePort+200+i, o.BasePort+300+i)
	}
	tw.Flush()
	leaderPort := o.BasePort + 1
	if n, err := strconv.Atoi(strings.TrimPrefix(v.Leader, "node")); err == nil {
		leaderPort = o.BasePort + n
	}
	fmt.Fprintf(w, "\nprimary:  psql 'postgres://postgres:%s@127.0.0.1:%d/postgres'   (%s, the leader now)\n", Password, leaderPort, v.Leader)
	fmt.Fprintf(w, "pooler:   psql 'postgres://postgres:%s@127.0.0.1:%d/postgres'   (writes go to the primary)\n", Password, o.BasePort+201)
	fmt.Fprintf(w, "configs:  %s/node*.yml   logs: %s/node*.log   Ctrl-C stops everything\n\n", dir, dir)
}
