package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vipManager is Debian's vip-manager (package vip-manager, 1.0.2 in
// Debian 12). It reads the leader key through etcd's v2 API only, so the
// nodes run with etcd.v2_leader_key and etcd with --enable-v2.
const vipManager = "/usr/bin/vip-manager"

// vip is the virtual IP: free in the hosts' /24 (etcd .11-.13, nodes
// .21-.23, client .100).
const vip = subnet + ".200"

// TestVIPManagerFollowsLeader runs vip-manager on every node, as Patroni
// deployments do, and checks from the client host that the virtual IP
// reaches the primary's Postgres, then the new primary's after a
// switchover and after a failover (kill -9 of the primary's daemon and
// Postgres; its vip-manager lives on and must drop the address).
func TestVIPManagerFollowsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED: -short: the VIP test needs root, namespaces, etcd, Postgres and vip-manager")
	}
	if why := CheckNetns(); why != "" {
		t.Skip("SKIPPED: " + why)
	}
	if _, err := os.Stat(vipManager); err != nil {
		t.Skip("SKIPPED: vip-manager is not installed (scripts/install-deps.sh installs Debian's)")
	}
	requireNetns(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c := startV2Cluster(ctx, t)
	var vms []*proc
	for _, n := range c.Nodes {
		vm, err := startVIPManager(c, n)
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	// Registered after the cluster's teardown, so it runs first: every
	// vip-manager is gone before the namespaces are deleted.
	t.Cleanup(func() {
		for _, vm := range vms {
			if err := vm.kill(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			for _, vm := range vms {
				if b, err := os.ReadFile(vm.logPath); err == nil {
					t.Logf("%s log (tail):\n%s", vm.name, tail(string(b), 1500))
				}
			}
		}
	})

	v, err := c.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := v.Leader
	if d, err := waitVIP(ctx, c, first, 20*time.Second); err != nil {
		t.Fatalf("VIP never reached the first primary %s: %v", first, err)
	} else {
		t.Logf("VIP %s on %s (primary) %.1fs after vip-manager started", vip, first, d.Seconds())
	}
	if err := vipQuery(ctx, c, poolerPort, first); err != nil {
		t.Errorf("pooler through the VIP: %v", err)
	}

	// Switchover: the VIP must follow the new leader.
	t0 := time.Now()
	if out, err := c.pghactl(ctx, "switchover", "--force"); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	returned := time.Since(t0)
	second, err := waitNewLeader(ctx, c, first)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waitVIP(ctx, c, second, 20*time.Second); err != nil {
		t.Fatalf("after the switchover to %s: %v", second, err)
	}
	t.Logf("switchover %s -> %s: pghactl returned after %.1fs; VIP moved %.1fs after the command started",
		first, second, returned.Seconds(), time.Since(t0).Seconds())

	// Failover: kill -9 of the primary's daemon and Postgres.
	if _, err := c.Converge(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	p := c.Node(second)
	t1 := time.Now()
	if err := killAllBut(p, vms); err != nil {
		t.Fatal(err)
	}
	third, err := waitNewLeader(ctx, c, second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waitVIP(ctx, c, third, 20*time.Second+c.Timing.TTL); err != nil {
		t.Fatalf("after the failover to %s: %v", third, err)
	}
	t.Logf("failover after kill -9 of %s (ttl %s): VIP on %s %.1fs after the kill",
		second, c.Timing.TTL, third, time.Since(t1).Seconds())
	t.Logf("whole test: %.0fs", time.Since(start).Seconds())
}

// startV2Cluster is the regression tests' cluster with etcd's v2 API on
// (--enable-v2) and every node writing its copy of the leader key there
// (etcd.v2_leader_key), Postgres and the pooler listening on every
// address (so on the VIP too).
func startV2Cluster(ctx context.Context, t *testing.T) *Cluster {
	t.Helper()
	c := startTestClusterWith(ctx, t, ClusterOptions{
		Timing:   Timing{TTL: 6 * time.Second, LoopWait: time.Second, RetryTimeout: 2 * time.Second},
		EtcdArgs: []string{"--enable-v2"},
		EditNode: func(n *Node) error {
			return editConfig(n.ConfigPath,
				"\netcd:\n", "\netcd:\n  v2_leader_key: true\n",
				fmt.Sprintf("  listen: %s:%d\n", n.Host.IP, pgPort), fmt.Sprintf("  listen: '*:%d'\n", pgPort),
				fmt.Sprintf("  listen: %s:%d\n", n.Host.IP, poolerPort), fmt.Sprintf("  listen: 0.0.0.0:%d\n", poolerPort))
		},
	})
	t.Logf("etcd with --enable-v2, nodes with etcd.v2_leader_key")
	return c
}

// editConfig replaces each old string (which must occur once) by its new
// one in the file.
func editConfig(path string, oldNew ...string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if strings.Count(s, oldNew[i]) != 1 {
			return fmt.Errorf("%s: %q occurs %d times", path, oldNew[i], strings.Count(s, oldNew[i]))
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return os.WriteFile(path, []byte(s), 0o600)
}

// vipManagerConfig is a node's vip-manager.yml (vip-manager 1.0.2 keys).
func vipManagerConfig(c *Cluster, n *Node) string {
	var eps []string
	for _, m := range c.Etcd {
		eps = append(eps, m.ClientURL())
	}
	return fmt.Sprintf(`# written by the pgha fault suite
ip: %s
netmask: 24
interface: eth0
trigger-key: /service/%s/leader
trigger-value: %s
dcs-type: etcd
dcs-endpoints: [%s]
interval: 1000
retry-after: 250
retry-num: 3
`, vip, scope, n.Name, strings.Join(eps, ", "))
}

// startVIPManager runs vip-manager in the node's namespace.
func startVIPManager(c *Cluster, n *Node) (*proc, error) {
	path := filepath.Join(c.Dir, n.Name+"-vip-manager.yml")
	if err := os.WriteFile(path, []byte(vipManagerConfig(c, n)), 0o644); err != nil {
		return nil, err
	}
	p := &proc{host: n.Host, name: "vip-manager " + n.Name, logPath: filepath.Join(c.Dir, n.Name+"-vip-manager.log"),
		args: []string{vipManager, "--config", path}}
	return p, p.start()
}

// killAllBut is kill -9 of every process in the node's namespace except
// the given ones (its vip-manager): the daemon, Postgres, the fence
// keeper. It waits, up to 15 s, until they are gone.
func killAllBut(n *Node, keep []*proc) error {
	spare := map[int]bool{}
	for _, p := range keep {
		if pid := p.pid(); pid != 0 {
			spare[pid] = true
			// ip netns exec runs the command in its own process: spare
			// its children too (vip-manager itself).
			for _, ch := range children(pid) {
				spare[ch] = true
			}
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []int
		for _, pid := range n.Host.Pids() {
			if !spare[pid] {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return n.waitExit(10 * time.Second)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: processes %v survive SIGKILL", n.Name, left)
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // poll: a SIGKILLed process leaves the list within ms
	}
}

// children lists pid's child processes (from /proc/<pid>/task/*/children).
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			var ch int
			if _, err := fmt.Sscan(s, &ch); err == nil {
				out = append(out, ch)
			}
		}
	}
	return out
}

// waitNewLeader waits (1 min at most) until etcd's leader key names a
// running primary other than old.
func waitNewLeader(ctx context.Context, c *Cluster, old string) (string, error) {
	var name string
	err := poll(ctx, time.Minute, "a new leader (other than "+old+")", func() string {
		v, err := c.View(ctx)
		if err != nil {
			return err.Error()
		}
		m, ok := v.LeaderMember()
		if !ok || v.Leader == old || m.State != "running" {
			return fmt.Sprintf("leader %q", v.Leader)
		}
		name = v.Leader
		return ""
	})
	return name, err
}

// waitVIP waits until the VIP is on want's interface alone and a
// connection from the client host to VIP:5432 reaches want's Postgres
// out of recovery. It returns how long that took.
func waitVIP(ctx context.Context, c *Cluster, want string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := poll(ctx, timeout, "VIP "+vip+" on "+want, func() string {
		var on []string
		for _, n := range c.Nodes {
			if holdsVIP(ctx, n) {
				on = append(on, n.Name)
			}
		}
		if len(on) != 1 || on[0] != want {
			return fmt.Sprintf("VIP on %v", on)
		}
		if err := vipQuery(ctx, c, pgPort, want); err != nil {
			return err.Error()
		}
		return ""
	})
	return time.Since(start), err
}

// holdsVIP reports whether the VIP is on the node's eth0.
func holdsVIP(ctx context.Context, n *Node) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "-n", n.Host.NS, "-o", "-4", "addr", "show", "dev", "eth0").Output()
	return err == nil && strings.Contains(string(out), " "+vip+"/")
}

// vipQuery connects from the client host to VIP:port and checks that
// the server is want's Postgres (cluster_name is the node's name) and
// out of recovery. The client's neighbour entry for the VIP is flushed
// first. vip-manager sends a gratuitous ARP when it adds the address, and
// without the flush the test passed as well (same figures), but a client
// may keep the old node's MAC for a while (neigh/*/locktime drops updates
// within 1 s of the last one), which would test the kernel's ARP caching
// rather than vip-manager.
func vipQuery(ctx context.Context, c *Cluster, port int, want string) error {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = exec.CommandContext(fctx, "ip", "-n", c.Client.NS, "neigh", "flush", "to", vip).Run()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := c.connect(qctx, pgURL(vip, port))
	if err != nil {
		return fmt.Errorf("connect %s:%d: %w", vip, port, err)
	}
	defer conn.Close(context.Background())
	var rec bool
	var name string
	if err := conn.QueryRow(qctx, "SELECT pg_is_in_recovery(), current_setting('cluster_name')").Scan(&rec, &name); err != nil {
		return fmt.Errorf("%s:%d: %w", vip, port, err)
	}
	if name != want || rec {
		return fmt.Errorf("%s:%d reaches %s (in recovery: %v), want primary %s", vip, port, name, rec, want)
	}
	return nil
}
