package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/leader"
)

// Cluster is one run's hosts and processes.
type Cluster struct {
	Net    *Net
	Etcd   []*EtcdMember
	Nodes  []*Node
	Client *Host
	Dir    string
	Timing Timing
	Sync   bool
	Bin    string // directory with pgha and pghactl
	Logf   func(format string, args ...any)

	cli *clientv3.Client
}

// ClusterOptions shape a cluster.
type ClusterOptions struct {
	Dir    string // run directory (configs, data, logs)
	Bin    string // directory holding pgha and pghactl
	Timing Timing
	Sync   bool
	Logf   func(format string, args ...any)
	// EtcdArgs are added to every etcd member's command line.
	EtcdArgs []string
	// EditNode, when set, may change a node's config file before the
	// node first starts.
	EditNode func(n *Node) error
}

// StartCluster builds the network, starts a 3-member etcd cluster and
// three pgha nodes, and waits (bounded) until the cluster has a primary
// with two streaming replicas and the workload's tables. On error the
// caller still calls Close.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	id := newRunID()
	hosts := map[string]string{"client": subnet + ".100"}
	for i := 1; i <= 3; i++ {
		hosts[fmt.Sprintf("e%d", i)] = fmt.Sprintf("%s.%d", subnet, 10+i)
		hosts[fmt.Sprintf("n%d", i)] = fmt.Sprintf("%s.%d", subnet, 20+i)
	}
	c := &Cluster{Dir: o.Dir, Timing: o.Timing, Sync: o.Sync, Bin: o.Bin, Logf: o.Logf}
	nw, err := NewNet(id, o.Dir, hosts)
	c.Net = nw
	if err != nil {
		return c, err
	}
	c.Client = nw.Host("client")
	c.Logf("network %s: bridge in %s, hosts %s.0/24 (etcd .11-.13, nodes .21-.23, client .100)", id, nw.Switch, subnet)
	var eh []*Host
	for i := 1; i <= 3; i++ {
		eh = append(eh, nw.Host(fmt.Sprintf("e%d", i)))
	}
	c.Etcd = newEtcdMembers(eh, o.Dir, "pgf-"+id)
	for _, m := range c.Etcd {
		m.args = append(m.args, o.EtcdArgs...)
		if err := m.start(); err != nil {
			return c, err
		}
	}
	if c.cli, err = etcdClient(c.Client, c.Etcd); err != nil {
		return c, fmt.Errorf("etcd client: %w", err)
	}
	if err := poll(ctx, 60*time.Second, "etcd cluster healthy", func() string {
		return etcdHealthy(ctx, c.cli, c.Etcd)
	}); err != nil {
		return c, err
	}
	for i := 1; i <= 3; i++ {
		n, err := newNode(nw.Host(fmt.Sprintf("n%d", i)), o.Dir, filepath.Join(o.Bin, "pgha"), c.Etcd, o.Timing, o.Sync)
		if err != nil {
			return c, err
		}
		if o.EditNode != nil {
			if err := o.EditNode(n); err != nil {
				return c, fmt.Errorf("%s config: %w", n.Name, err)
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			return c, err
		}
	}
	start := time.Now()
	if _, err := c.Converge(ctx, 4*time.Minute); err != nil {
		return c, fmt.Errorf("bootstrap: %w", err)
	}
	v, _ := c.View(ctx)
	lead := c.Node(v.Leader)
	if err := c.exec(ctx, lead, `CREATE TABLE acked (id bigint PRIMARY KEY, client text NOT NULL, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())`); err != nil {
		return c, err
	}
	if _, err := c.Converge(ctx, time.Minute); err != nil {
		return c, err
	}
	c.Logf("cluster up in %.0fs: leader %s, synchronous_mode %v, ttl %s", time.Since(start).Seconds(), v.Leader, o.Sync, o.Timing.TTL)
	return c, nil
}

// Close kills every process and removes the namespaces. Postgres is
// stopped with pg_ctl first (no shared memory left behind).
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		if err := n.kill(); err != nil {
			errs = append(errs, err)
		}
		_, _ = n.SignalPostmaster(syscall.SIGCONT) // a stopped postmaster must run to stop
		n.StopPostgres()
	}
	for _, m := range c.Etcd {
		_ = m.kill()
	}
	if c.cli != nil {
		c.cli.Close()
	}
	if c.Net != nil {
		if err := c.Net.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// View reads the cluster's keys from etcd (from the client host).
func (c *Cluster) View(ctx context.Context) (cluster.View, error) {
	vctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return leader.ReadView(vctx, c.cli, "/service/", scope)
}

// connect opens a superuser connection to dsn from the client host.
func (c *Cluster) connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := connConfig(c.Client, dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// exec runs sql on the node's Postgres directly (bounded by 20 s).
func (c *Cluster) exec(ctx context.Context, n *Node, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, n.DSN())
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, sql, err)
	}
	return nil
}

// queryRow runs a one-row query on the node directly (bounded by 3 s).
func (c *Cluster) queryRow(ctx context.Context, n *Node, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, n.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// pgState is what one node's Postgres says about itself.
type pgState struct {
	recovery bool
	tl       int64  // primary: its insert timeline; replica: received_tli
	lsn      uint64 // primary: current; replica: replay
	receiver string // replica: pg_stat_wal_receiver.status
}

func (c *Cluster) pgState(ctx context.Context, n *Node) (pgState, error) {
	var st pgState
	if err := c.queryRow(ctx, n, "SELECT pg_is_in_recovery()", &st.recovery); err != nil {
		return st, err
	}
	var lsn, tl string
	if !st.recovery {
		if err := c.queryRow(ctx, n, "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())", &lsn, &tl); err != nil {
			return st, err
		}
		t, err := strconv.ParseInt(tl[:8], 16, 64)
		if err != nil {
			return st, err
		}
		st.tl = t
	} else {
		err := c.queryRow(ctx, n, `SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0'),
			coalesce((SELECT status FROM pg_stat_wal_receiver), ''), coalesce((SELECT received_tli FROM pg_stat_wal_receiver), 0)::text`,
			&lsn, &st.receiver, &tl)
		if err != nil {
			return st, err
		}
		st.tl, _ = strconv.ParseInt(tl, 10, 64)
	}
	v, err := parseLSN(lsn)
	st.lsn = v
	return st, err
}

// parseLSN reads Postgres's X/Y form.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad lsn %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad lsn %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad lsn %q", s)
	}
	return h<<32 | l, nil
}

// Converge waits, up to timeout, until the cluster is whole again: etcd
// names a leader that runs as primary; every node's member key says
// replica/streaming on the leader's timeline; exactly one node's Postgres
// is out of recovery (the leader's); every replica's WAL receiver streams
// that timeline; in synchronous mode, etcd's sync key names one of them;
// and every replica has replayed the leader's WAL up to the position it
// had when the rest first held. It returns the leader.
func (c *Cluster) Converge(ctx context.Context, timeout time.Duration) (string, error) {
	var target uint64
	var targetLeader string
	var leaderName string
	err := poll(ctx, timeout, "convergence", func() string {
		v, err := c.View(ctx)
		if err != nil {
			return "etcd: " + err.Error()
		}
		if v.Leader == "" {
			return "no leader key"
		}
		lm, ok := v.LeaderMember()
		if !ok || lm.Role != cluster.RolePrimary || lm.State != cluster.StateRunning {
			return fmt.Sprintf("leader %s is %s/%s", v.Leader, lm.Role, lm.State)
		}
		for _, n := range c.Nodes {
			if n.Name == v.Leader {
				continue
			}
			m, ok := v.Member(n.Name)
			if !ok {
				return n.Name + " has no member key"
			}
			if m.Role != cluster.RoleReplica || m.State != cluster.StateStreaming || m.Timeline != lm.Timeline {
				return fmt.Sprintf("%s is %s/%s on timeline %d (leader %s on %d)", n.Name, m.Role, m.State, m.Timeline, v.Leader, lm.Timeline)
			}
		}
		if c.Sync {
			if v.Sync == nil || v.Sync.Leader != v.Leader || v.Sync.SyncStandby == "" {
				return fmt.Sprintf("synchronous_mode: no synchronous standby named in etcd (sync key %+v)", v.Sync)
			}
		}
		states := map[string]pgState{}
		for _, n := range c.Nodes {
			st, err := c.pgState(ctx, n)
			if err != nil {
				return n.Name + ": " + err.Error()
			}
			states[n.Name] = st
		}
		lead := states[v.Leader]
		if lead.recovery {
			return "leader " + v.Leader + " is in recovery"
		}
		for name, st := range states {
			if name == v.Leader {
				continue
			}
			if !st.recovery {
				return fmt.Sprintf("%s is out of recovery too (leader %s)", name, v.Leader)
			}
			if st.receiver != "streaming" || st.tl != lead.tl {
				return fmt.Sprintf("%s: WAL receiver %q on timeline %d (leader on %d)", name, st.receiver, st.tl, lead.tl)
			}
		}
		if targetLeader != v.Leader {
			target, targetLeader = lead.lsn, v.Leader
		}
		for name, st := range states {
			if name != v.Leader && st.lsn < target {
				return fmt.Sprintf("%s replayed %X, leader was at %X", name, st.lsn, target)
			}
		}
		leaderName = v.Leader
		return ""
	})
	return leaderName, err
}

// Digest is a table's row count and a hash over its ids on one node.
type Digest struct {
	Rows int64
	Hash string
}

func (c *Cluster) digest(ctx context.Context, n *Node, table string) (Digest, error) {
	var d Digest
	err := c.queryRow(ctx, n, "SELECT count(*), coalesce(sum(hashtextextended(id::text, 0)), 0)::text FROM "+table, &d.Rows, &d.Hash)
	return d, err
}

// ids returns every id of the acked table on the node.
func (c *Cluster) ids(ctx context.Context, n *Node) (map[int64]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, n.DSN())
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT id FROM acked")
	if err != nil {
		return nil, err
	}
	out := map[int64]bool{}
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error { out[id] = true; return nil })
	return out, err
}

// pghactl runs pghactl with node n's config from the client host.
func (c *Cluster) pghactl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	full := append([]string{"-c", c.Nodes[0].ConfigPath}, args...)
	return c.Client.Run(ctx, "", filepath.Join(c.Bin, "pghactl"), full...)
}

// poll calls cond every 250 ms until it returns "" (nil), ctx ends, or
// timeout passes (an error naming what and the last answer).
func poll(ctx context.Context, timeout time.Duration, what string, cond func() string) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		if last = cond(); last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not reached within %s: %s", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// buildBinaries builds pgha and pghactl into dir.
func buildBinaries(ctx context.Context, dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
		if _, serr := os.Stat(goBin); serr != nil {
			return fmt.Errorf("no go command on PATH to build pgha: %w", err)
		}
	}
	for _, name := range []string{"pgha", "pghactl"} {
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", filepath.Join(dir, name), "github.com/pgha/pgha/cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", name, err, out)
		}
	}
	return nil
}
