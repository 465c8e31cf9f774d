package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nsPrefix starts the name of every namespace the suite creates:
// pgf-<run id>-<host>. The startup sweep removes namespaces with this
// prefix whose run is gone.
const nsPrefix = "pgf-"

// probePrefix names the scratch namespaces of CheckNetns and NetemReason
// (deleted at once; the sweep removes those older than a minute).
const probePrefix = "pgfprobe-"

// subnet is the hosts' /24. The hosts live only in the run's own
// namespaces (the bridge sits in a namespace of its own), so parallel runs
// and the machine's own networks never see each other's addresses.
const subnet = "10.77.0"

// runsDir holds one file per live run: its pid and its temp dir.
var runsDir = filepath.Join(os.TempDir(), "pgha-faults-runs")

// Net is one run's network: a bridge in its own namespace and one
// namespace per host, each with a veth on the bridge.
type Net struct {
	ID     string
	Switch string
	Hosts  []*Host
	Dir    string
}

// Host is one network namespace with one address on the bridge.
type Host struct {
	Name string // e1, n1, client, ...
	NS   string // pgf-<id>-<name>
	IP   string
	nsFD int
}

// newRunID returns 5 random hex digits.
func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:5]
}

// ip runs /usr/sbin/ip (or ip on PATH) with args.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CheckNetns reports why namespaces cannot be used here, or "".
func CheckNetns() string {
	if os.Geteuid() != 0 {
		return "the fault suite needs root (it creates network namespaces, a bridge and firewall rules)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the fault suite needs `ip` (iproute2): run scripts/install-deps.sh"
	}
	name := probePrefix + newRunID()
	if err := ip("netns", "add", name); err != nil {
		return "network namespaces are unavailable: " + err.Error()
	}
	defer func() { _ = ip("netns", "del", name) }()
	if err := ip("-n", name, "link", "add", "br0", "type", "bridge"); err != nil {
		return "cannot create a bridge in a namespace: " + err.Error()
	}
	return ""
}

// NewNet creates the switch namespace with its bridge and one namespace
// per named host (addresses in the order given by ips). It registers the
// run in runsDir so a later sweep can tell a live run from a dead one.
func NewNet(id, dir string, hosts map[string]string) (*Net, error) {
	n := &Net{ID: id, Switch: nsPrefix + id + "-sw", Dir: dir}
	if err := os.MkdirAll(runsDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(runsDir, id), []byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), dir)), 0o644); err != nil {
		return nil, err
	}
	if err := ip("netns", "add", n.Switch); err != nil {
		return n, err
	}
	for _, args := range [][]string{
		{"-n", n.Switch, "link", "set", "lo", "up"},
		{"-n", n.Switch, "link", "add", "br0", "type", "bridge"},
		{"-n", n.Switch, "link", "set", "br0", "up"},
	} {
		if err := ip(args...); err != nil {
			return n, err
		}
	}
	for _, name := range sortedKeys(hosts) {
		h := &Host{Name: name, NS: nsPrefix + id + "-" + name, IP: hosts[name], nsFD: -1}
		n.Hosts = append(n.Hosts, h)
		veth := "v" + id + "-" + name
		for _, args := range [][]string{
			{"netns", "add", h.NS},
			{"link", "add", "name", veth, "netns", n.Switch, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"-n", n.Switch, "link", "set", veth, "master", "br0"},
			{"-n", n.Switch, "link", "set", veth, "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
		} {
			if err := ip(args...); err != nil {
				return n, err
			}
		}
		fd, err := unix.Open("/run/netns/"+h.NS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return n, fmt.Errorf("open namespace %s: %w", h.NS, err)
		}
		h.nsFD = fd
	}
	return n, nil
}

// Host returns the host called name.
func (n *Net) Host(name string) *Host {
	for _, h := range n.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Close kills every process in the run's namespaces and deletes them.
func (n *Net) Close() error {
	var errs []error
	for _, h := range n.Hosts {
		if h.nsFD >= 0 {
			_ = unix.Close(h.nsFD)
			h.nsFD = -1
		}
		if err := removeNamespace(h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeNamespace(n.Switch); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(filepath.Join(runsDir, n.ID))
	return errors.Join(errs...)
}

// Command is name args... run inside the host's namespace.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Run runs a command inside the host's namespace and returns its output.
func (h *Host) Run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %s %s: %v: %s", h.Name, name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Pids lists every process whose network namespace is the host's.
func (h *Host) Pids() []int { return nsPids(h.NS) }

func nsPids(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		// This process never counts: a thread of it may be inside the
		// namespace for a moment (Dial).
		if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}

// KillAll sends SIGKILL to every process of the namespace (SIGCONT first,
// so a stopped one dies at once) and waits, up to 15 s, until none is
// left.
func KillAll(ns string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := nsPids(ns)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %v survive SIGKILL", ns, pids)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // poll: a SIGKILLed process leaves the list within ms
	}
}

func removeNamespace(ns string) error {
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		return nil
	}
	kerr := KillAll(ns)
	if err := ip("netns", "del", ns); err != nil {
		return errors.Join(kerr, err)
	}
	return kerr
}

// Dial opens a TCP connection from inside the host's namespace: a new
// goroutine locks its OS thread, enters the namespace, creates and
// connects the socket there (a socket keeps the namespace it was made
// in), then puts the thread back in its own namespace before unlocking
// it. The thread must not die: a process the harness started from that
// thread would get its Pdeathsig.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("open this thread's namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(h.nsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("enter namespace %s: %w", h.NS, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
			// Cannot happen short of a kernel bug; a thread stuck in the
			// client namespace must not run other goroutines.
			panic(fmt.Sprintf("faults: leave namespace %s: %v", h.NS, rerr))
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// nft applies an nftables script inside the host's namespace.
func (h *Host) nft(script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Run(ctx, script, "nft", "-f", "-")
	return err
}

// Block drops every packet between this host and the given addresses
// (both directions), replacing an earlier Block.
func (h *Host) Block(ips []string) error {
	set := strings.Join(ips, ", ")
	return h.nft(fmt.Sprintf(`table inet pgfault_cut
delete table inet pgfault_cut
table inet pgfault_cut {
  chain in { type filter hook input priority 0; policy accept; ip saddr { %[1]s } drop; }
  chain out { type filter hook output priority 0; policy accept; ip daddr { %[1]s } drop; }
}
`, set))
}

// Unblock removes Block's rules.
func (h *Host) Unblock() error {
	return h.nft("table inet pgfault_cut\ndelete table inet pgfault_cut\n")
}

// Lose drops pct percent of the packets the host receives (nft numgen;
// needs no qdisc).
func (h *Host) Lose(pct int) error {
	return h.nft(fmt.Sprintf(`table inet pgfault_loss
delete table inet pgfault_loss
table inet pgfault_loss {
  chain in { type filter hook input priority 0; policy accept; iifname "eth0" numgen random mod 100 < %d drop; }
}
`, pct))
}

// Unlose removes Lose's rule.
func (h *Host) Unlose() error {
	return h.nft("table inet pgfault_loss\ndelete table inet pgfault_loss\n")
}

// Netem sets a netem qdisc (delay and loss) on the host's link.
func (h *Host) Netem(delay, jitter time.Duration, lossPct int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Run(ctx, "", "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
		"delay", fmt.Sprintf("%dms", delay.Milliseconds()), fmt.Sprintf("%dms", jitter.Milliseconds()),
		"loss", fmt.Sprintf("%d%%", lossPct))
	return err
}

// Unnetem removes the netem qdisc.
func (h *Host) Unnetem() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Run(ctx, "", "tc", "qdisc", "del", "dev", "eth0", "root")
	return err
}

// NetemReason says why the kernel cannot delay packets, or "": it tries
// a netem qdisc in a scratch namespace.
func NetemReason() string {
	name := probePrefix + newRunID()
	if err := ip("netns", "add", name); err != nil {
		return err.Error()
	}
	defer func() { _ = ip("netns", "del", name) }()
	out, err := exec.Command("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("the kernel has no sch_netem (tc: %s)", strings.TrimSpace(string(out)))
	}
	return ""
}

// Sweep removes what killed runs left behind: namespaces named pgf-<id>-*
// whose run file is missing or names a dead process (their processes are
// killed first), and those runs' temp dirs. It returns what it removed.
func Sweep() []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	live := map[string]bool{}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, probePrefix) {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				if removeNamespace(name) == nil {
					removed = append(removed, name)
				}
			}
			continue
		}
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		rest := strings.TrimPrefix(name, nsPrefix)
		id, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		alive, seen := live[id]
		if !seen {
			alive = runAlive(id)
			live[id] = alive
		}
		if alive {
			continue
		}
		if err := removeNamespace(name); err == nil {
			removed = append(removed, name)
		}
	}
	for id, alive := range live {
		if alive {
			continue
		}
		path := filepath.Join(runsDir, id)
		if b, err := os.ReadFile(path); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) > 1 && strings.Contains(lines[1], "pgha-faults-") {
				_ = os.RemoveAll(lines[1])
				removed = append(removed, lines[1])
			}
		}
		_ = os.Remove(path)
	}
	return removed
}

// runAlive reports whether run id's owner process still exists.
func runAlive(id string) bool {
	b, err := os.ReadFile(filepath.Join(runsDir, id))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
