package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"
)

// Kind is one kind of fault.
type Kind string

// The nemeses. Each is injected on a target, held, then healed.
const (
	DaemonKill        Kind = "daemon-kill"         // kill -9 of the daemon alone; started again at heal
	PostmasterKill    Kind = "postmaster-kill"     // kill -9 of the postmaster; the daemon deals with it
	NodeKill          Kind = "node-kill"           // kill -9 of every process in the node's namespace; daemon started at heal
	DaemonStop        Kind = "daemon-stop"         // SIGSTOP of the daemon for longer than ttl; SIGCONT at heal
	PostgresStop      Kind = "postgres-stop"       // SIGSTOP of the postmaster; SIGCONT at heal
	PrimaryEtcdCut    Kind = "primary-etcd-cut"    // the primary cut from the etcd members only
	PrimaryIsolate    Kind = "primary-isolate"     // the primary cut from etcd and the other nodes (the client still reaches it)
	PrimaryReplicaCut Kind = "primary-replica-cut" // the primary cut from its replicas only
	EtcdIsolate       Kind = "etcd-isolate"        // one etcd member cut from every other host
	EtcdLeaderKill    Kind = "etcd-leader-kill"    // kill -9 of the etcd raft leader; restarted at heal
	NetDegrade        Kind = "net-degrade"         // delay and loss on every host's link (loss only without sch_netem)
	Switchover        Kind = "switchover"          // pghactl switchover --force under load
	DaemonRestart     Kind = "daemon-restart"      // kill -9 of the primary's daemon, started again at once
)

// AllKinds are the kinds the random schedule draws from.
var AllKinds = []Kind{DaemonKill, PostmasterKill, NodeKill, DaemonStop, PostgresStop,
	PrimaryEtcdCut, PrimaryIsolate, PrimaryReplicaCut, EtcdIsolate, EtcdLeaderKill, NetDegrade, Switchover}

// ParseKind reads a kind name.
func ParseKind(s string) (Kind, error) {
	for _, k := range append(AllKinds, DaemonRestart) {
		if string(k) == s {
			return k, nil
		}
	}
	var names []string
	for _, k := range append(AllKinds, DaemonRestart) {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("unknown fault kind %q: use one of %s", s, strings.Join(names, ", "))
}

// Fault is one injected fault and what the run saw of it.
type Fault struct {
	Seq    int           `json:"seq"`
	Kind   Kind          `json:"kind"`
	Target string        `json:"target"` // a node, an etcd member, or "all"
	Role   string        `json:"target_role,omitempty"`
	Hold   time.Duration `json:"-"`
	Detail string        `json:"detail,omitempty"`

	Injected  time.Time `json:"injected"`
	Healed    time.Time `json:"healed"`
	Converged time.Time `json:"converged"`
	Leader    string    `json:"leader_before"`
	NewLeader string    `json:"leader_after"`
	Error     string    `json:"error,omitempty"`
}

// planHold draws how long a fault of kind k is held, for ttl.
func planHold(r *rand.Rand, k Kind, ttl time.Duration) time.Duration {
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)))
	}
	s := time.Second
	switch k {
	case DaemonKill:
		return between(ttl/3, 5*ttl/2)
	case PostmasterKill:
		return between(2*s, ttl)
	case NodeKill, PrimaryEtcdCut, PrimaryIsolate:
		return between(ttl, 3*ttl)
	case DaemonStop:
		return between(ttl+s, 5*ttl/2)
	case PostgresStop, PrimaryReplicaCut, EtcdIsolate, EtcdLeaderKill:
		return between(2*s, 2*ttl)
	case NetDegrade:
		return between(5*s, 3*ttl)
	}
	return 0
}

// primaryBiased picks the primary three times in four, else a replica.
func primaryBiased(r *rand.Rand, primary string, nodes []*Node) (string, string) {
	if primary != "" && r.IntN(4) != 0 {
		return primary, "primary"
	}
	var reps []string
	for _, n := range nodes {
		if n.Name != primary {
			reps = append(reps, n.Name)
		}
	}
	return reps[r.IntN(len(reps))], "replica"
}

// degrade is the chosen network degradation.
type degrade struct {
	delay, jitter time.Duration
	loss          int
}

// inject starts fault f on the cluster. f.Target is set for node and
// etcd faults; the leader is the current primary.
func (c *Cluster) inject(ctx context.Context, r *rand.Rand, f *Fault, netem string) error {
	switch f.Kind {
	case DaemonKill, DaemonRestart:
		return c.Node(f.Target).kill()
	case PostmasterKill:
		pid, err := c.Node(f.Target).SignalPostmaster(syscall.SIGKILL)
		f.Detail = fmt.Sprintf("postmaster pid %d", pid)
		return err
	case NodeKill:
		return c.Node(f.Target).KillAll()
	case DaemonStop:
		return c.Node(f.Target).signal(syscall.SIGSTOP)
	case PostgresStop:
		pid, err := c.Node(f.Target).SignalPostmaster(syscall.SIGSTOP)
		f.Detail = fmt.Sprintf("postmaster pid %d", pid)
		return err
	case PrimaryEtcdCut:
		return c.Node(f.Target).Host.Block(c.etcdIPs())
	case PrimaryIsolate:
		ips := c.etcdIPs()
		for _, n := range c.Nodes {
			if n.Name != f.Target {
				ips = append(ips, n.Host.IP)
			}
		}
		return c.Node(f.Target).Host.Block(ips)
	case PrimaryReplicaCut:
		var ips []string
		for _, n := range c.Nodes {
			if n.Name != f.Target {
				ips = append(ips, n.Host.IP)
			}
		}
		return c.Node(f.Target).Host.Block(ips)
	case EtcdIsolate:
		m := c.etcdMember(f.Target)
		var ips []string
		for _, h := range c.Net.Hosts {
			if h != m.Host {
				ips = append(ips, h.IP)
			}
		}
		return m.Host.Block(ips)
	case EtcdLeaderKill:
		return c.etcdMember(f.Target).kill()
	case NetDegrade:
		d := degrade{delay: time.Duration(20+r.IntN(130)) * time.Millisecond, loss: 3 + r.IntN(13)}
		d.jitter = d.delay / 4
		if netem == "" {
			f.Detail = fmt.Sprintf("netem delay %s ±%s, loss %d%% on every host", d.delay, d.jitter, d.loss)
			for _, h := range c.Net.Hosts {
				if err := h.Netem(d.delay, d.jitter, d.loss); err != nil {
					return err
				}
			}
			return nil
		}
		f.Detail = fmt.Sprintf("loss %d%% on every host (nft); delay skipped: %s", d.loss, netem)
		for _, h := range c.Net.Hosts {
			if err := h.Lose(d.loss); err != nil {
				return err
			}
		}
		return nil
	case Switchover:
		out, err := c.pghactl(ctx, "switchover", "--force")
		f.Detail = "pghactl: " + ctlMessage(out)
		return err
	}
	return fmt.Errorf("inject: unknown kind %s", f.Kind)
}

// heal ends fault f: restarts what was killed, continues what was
// stopped, removes rules.
func (c *Cluster) heal(f *Fault, netem string) error {
	switch f.Kind {
	case DaemonKill, DaemonRestart, NodeKill:
		return c.Node(f.Target).Start()
	case DaemonStop:
		return c.Node(f.Target).signal(syscall.SIGCONT)
	case PostgresStop:
		pid := c.Node(f.Target).PostmasterPid()
		if pid == 0 {
			return nil // the daemon replaced it meanwhile
		}
		return syscall.Kill(pid, syscall.SIGCONT)
	case PrimaryEtcdCut, PrimaryIsolate, PrimaryReplicaCut:
		return c.Node(f.Target).Host.Unblock()
	case EtcdIsolate:
		return c.etcdMember(f.Target).Host.Unblock()
	case EtcdLeaderKill:
		return c.etcdMember(f.Target).start()
	case NetDegrade:
		for _, h := range c.Net.Hosts {
			var err error
			if netem == "" {
				err = h.Unnetem()
			} else {
				err = h.Unlose()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// healAll undoes anything a fault may have left (used when a run stops
// early): SIGCONT and start every process, remove every rule.
func (c *Cluster) healAll(netem string) {
	for _, n := range c.Nodes {
		_ = n.signal(syscall.SIGCONT)
		if pid := n.PostmasterPid(); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		_ = n.Start()
	}
	for _, m := range c.Etcd {
		_ = m.start()
	}
	for _, h := range c.Net.Hosts {
		_ = h.Unblock()
		if netem == "" {
			_ = h.Unnetem()
		} else {
			_ = h.Unlose()
		}
	}
}

func (c *Cluster) etcdIPs() []string {
	var ips []string
	for _, m := range c.Etcd {
		ips = append(ips, m.Host.IP)
	}
	return ips
}

func (c *Cluster) etcdMember(name string) *EtcdMember {
	for _, m := range c.Etcd {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// ctlMessage keeps pghactl's message lines, without its member tables.
func ctlMessage(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "Current cluster topology" || strings.HasPrefix(l, "+") || strings.HasPrefix(l, "|") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "; ")
}
