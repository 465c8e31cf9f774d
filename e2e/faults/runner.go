package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options shape one run.
type Options struct {
	// Faults is the number of faults of a random schedule.
	Faults int
	// Seed drives every random choice (schedule, targets, hold times).
	Seed int64
	// Sync turns synchronous_mode on.
	Sync bool
	// Scenario is "random" (a schedule drawn from Kinds) or kinds,
	// comma-separated: each fault on the primary N times with a fixed hold
	// (2 x ttl for daemon-kill and daemon-stop, none for daemon-restart).
	Scenario string
	N        int
	// Kinds the random schedule draws from (default AllKinds).
	Kinds []Kind
	// Offset skips the first Offset faults of the random schedule (the
	// short run's second half continues the first half's schedule).
	Offset int
	Timing Timing
	// Out receives report.json and the logs of every process.
	Out string
	// ConvergeTimeout bounds the wait for convergence after a heal.
	ConvergeTimeout time.Duration
	Logf            func(format string, args ...any)
}

func (o *Options) defaults() error {
	if o.Scenario == "" {
		o.Scenario = "random"
	}
	if len(o.Kinds) == 0 {
		o.Kinds = AllKinds
	}
	if o.Timing.TTL == 0 {
		o.Timing = Timing{TTL: 6 * time.Second, LoopWait: time.Second, RetryTimeout: 2 * time.Second}
	}
	if o.ConvergeTimeout == 0 {
		o.ConvergeTimeout = 90 * time.Second
	}
	if o.Scenario != "random" {
		for _, name := range strings.Split(o.Scenario, ",") {
			if _, err := ParseKind(name); err != nil {
				return fmt.Errorf("scenario: %w (or random)", err)
			}
		}
		if o.N <= 0 {
			return fmt.Errorf("scenario %s: N must be at least 1", o.Scenario)
		}
	} else if o.Faults <= 0 {
		return errors.New("faults: the number of faults must be at least 1")
	}
	if o.Out == "" {
		return errors.New("faults: Out (the report directory) is required")
	}
	return nil
}

// plan returns the faults to inject: for a random run, successive
// shuffles of the kinds (so every kind comes up before any repeats) cut
// to o.Faults; for a scenario, N times each of its kinds.
func (o *Options) plan(r *rand.Rand) []Kind {
	if o.Scenario != "random" {
		var out []Kind
		for _, name := range strings.Split(o.Scenario, ",") {
			k, _ := ParseKind(name)
			for range o.N {
				out = append(out, k)
			}
		}
		return out
	}
	var out []Kind
	for len(out) < o.Offset+o.Faults {
		perm := append([]Kind(nil), o.Kinds...)
		r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		out = append(out, perm...)
	}
	return out[o.Offset : o.Offset+o.Faults]
}

// Run builds a cluster, runs the workload, injects and heals the planned
// faults, and checks the outcome. The report is returned (and written to
// o.Out/report.json) also when the run stopped early; err says why it
// stopped early or could not start.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if swept := Sweep(); len(swept) > 0 {
		o.Logf("swept what earlier runs left: %s", strings.Join(swept, ", "))
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/tmp", "pgha-faults-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // the postgres user traverses it
		return nil, err
	}
	bin := filepath.Join(dir, "bin")
	if err := buildBinaries(ctx, bin); err != nil {
		return nil, err
	}
	noNetem := NetemReason()
	if noNetem != "" {
		o.Logf("net-degrade: delay skipped (%s); packet loss is applied with nft instead", noNetem)
	}
	r := newRand(o.Seed)
	kinds := o.plan(r)
	o.Logf("seed %d, synchronous_mode %v, scenario %s, %d faults: %v", o.Seed, o.Sync, o.Scenario, len(kinds), kinds)

	c, err := StartCluster(ctx, ClusterOptions{Dir: dir, Bin: bin, Timing: o.Timing, Sync: o.Sync, Logf: o.Logf})
	defer func() {
		if c != nil {
			copyLogs(c, filepath.Join(o.Out, "logs"))
			if cerr := c.Close(); cerr != nil {
				o.Logf("teardown: %v", cerr)
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	rep := &Report{Seed: o.Seed, Sync: o.Sync, Scenario: o.Scenario, TTL: o.Timing.TTL, LoopWait: o.Timing.LoopWait,
		NoNetem: noNetem, Started: time.Now()}
	wl := NewWorkload(c)
	wctx, stopWorkload := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- wl.Run(wctx) }()
	stop := func() {
		if stopWorkload != nil {
			stopWorkload()
			<-wdone
			stopWorkload = nil
		}
	}
	defer stop()

	var runErr error
	if err := poll(ctx, time.Minute, "writes through every pooler", func() string { return wl.AckedSince(rep.Started) }); err != nil {
		runErr = err
	}
	for i, k := range kinds {
		if runErr != nil {
			break
		}
		f := Fault{Seq: i + 1, Kind: k}
		runErr = c.runFault(ctx, r, &o, &f, noNetem, rep)
		rep.Faults = append(rep.Faults, f)
		o.Logf("fault %d/%d %s on %s (%s) held %.1fs: %s -> %s, converged %.1fs after heal%s%s", f.Seq, len(kinds), f.Kind, f.Target, f.Role,
			f.Hold.Seconds(), f.Leader, f.NewLeader, f.Converged.Sub(f.Healed).Seconds(), prefixed("; ", f.Detail), prefixed("; error: ", f.Error))
		if runErr != nil {
			break
		}
		// The workload runs undisturbed for a moment between faults.
		select {
		case <-ctx.Done():
			runErr = ctx.Err()
		case <-time.After(time.Duration(1000+r.IntN(2000)) * time.Millisecond):
		}
	}
	if runErr != nil {
		c.healAll(noNetem)
	}
	stop()
	rep.Ended = time.Now()
	rec := wl.Snapshot()
	fctx := ctx
	if ctx.Err() != nil { // interrupted: still look at what is there, briefly
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 40*time.Second)
		defer cancel()
	}
	final, ferr := c.finalState(fctx, o.ConvergeTimeout)
	rep.analyze(rec, final, ferr, o.Timing)
	if runErr != nil {
		rep.Violations = append(rep.Violations, "run stopped early: "+runErr.Error())
	}
	if err := rep.WriteJSON(filepath.Join(o.Out, "report.json")); err != nil {
		o.Logf("report.json: %v", err)
	}
	return rep, runErr
}

// newRand is the run's random source for seed.
func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0x70676861)) }

// runFault injects, holds, heals one fault and waits for convergence.
// An error means the run cannot go on (no convergence, or ctx ended).
func (c *Cluster) runFault(ctx context.Context, r *rand.Rand, o *Options, f *Fault, noNetem string, rep *Report) error {
	for _, n := range c.Nodes { // a daemon that died on its own is a finding
		if !n.running() {
			rep.Violations = append(rep.Violations, fmt.Sprintf("before fault %d: the daemon of %s had exited on its own (see logs/%s.log)", f.Seq, n.Name, n.Name))
			if err := n.Start(); err != nil {
				return err
			}
		}
	}
	v, err := c.View(ctx)
	if err != nil {
		return fmt.Errorf("fault %d: read the cluster: %w", f.Seq, err)
	}
	f.Leader = v.Leader
	scenario := o.Scenario != "random"
	switch f.Kind {
	case DaemonKill, PostmasterKill, NodeKill, DaemonStop, PostgresStop:
		if scenario {
			f.Target, f.Role = v.Leader, "primary"
		} else {
			f.Target, f.Role = primaryBiased(r, v.Leader, c.Nodes)
		}
	case PrimaryEtcdCut, PrimaryIsolate, PrimaryReplicaCut, DaemonRestart, Switchover:
		f.Target, f.Role = v.Leader, "primary"
	case EtcdIsolate:
		m := c.Etcd[r.IntN(len(c.Etcd))]
		f.Target, f.Role = m.Name, "etcd"
	case EtcdLeaderKill:
		m, err := etcdLeader(ctx, c.cli, c.Etcd)
		if err != nil {
			return fmt.Errorf("fault %d: %w", f.Seq, err)
		}
		f.Target, f.Role = m.Name, "etcd leader"
	case NetDegrade:
		f.Target, f.Role = "all", "network"
	}
	f.Hold = planHold(r, f.Kind, o.Timing.TTL)
	if scenario && (f.Kind == DaemonKill || f.Kind == DaemonStop) {
		f.Hold = 2 * o.Timing.TTL
	}
	f.Injected = time.Now()
	if err := c.inject(ctx, r, f, noNetem); err != nil {
		f.Error = "inject: " + err.Error()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(f.Hold):
	}
	if err := c.heal(f, noNetem); err != nil {
		f.Error = strings.TrimPrefix(f.Error+"; heal: "+err.Error(), "; ")
	}
	f.Healed = time.Now()
	lead, err := c.Converge(ctx, o.ConvergeTimeout)
	f.Converged = time.Now()
	f.NewLeader = lead
	if err == nil {
		return nil
	}
	f.Error = strings.TrimPrefix(f.Error+"; "+err.Error(), "; ")
	if ctx.Err() != nil {
		return err
	}
	// The cluster did not heal by itself: that is the finding. Rebuild
	// the replicas that do not stream (pghactl reinit) so the run can go
	// on; give up when even that does not converge.
	stuck, rerr := c.reinitStuck(ctx)
	if rerr == nil {
		lead, rerr = c.Converge(ctx, o.ConvergeTimeout)
	}
	if rerr != nil {
		return fmt.Errorf("fault %d (%s on %s): %w; recovery with pghactl reinit %v: %v", f.Seq, f.Kind, f.Target, err, stuck, rerr)
	}
	f.Detail = strings.TrimPrefix(fmt.Sprintf("%s; recovered by pghactl reinit %s after %.0fs", f.Detail, strings.Join(stuck, " "), time.Since(f.Converged).Seconds()), "; ")
	f.Converged, f.NewLeader = time.Now(), lead
	return nil
}

// reinitStuck runs pghactl reinit --force --wait for every node that is
// not a streaming replica of the current leader.
func (c *Cluster) reinitStuck(ctx context.Context) ([]string, error) {
	v, err := c.View(ctx)
	if err != nil {
		return nil, err
	}
	if v.Leader == "" {
		return nil, errors.New("no leader to rebuild replicas from")
	}
	var stuck []string
	for _, n := range c.Nodes {
		if n.Name == v.Leader {
			continue
		}
		st, err := c.pgState(ctx, n)
		if err != nil || !st.recovery || st.receiver != "streaming" {
			stuck = append(stuck, n.Name)
		}
	}
	if len(stuck) == 0 {
		stuck = append(stuck, "(none)")
		return stuck, errors.New("every replica streams; nothing to rebuild")
	}
	_, err = c.pghactl(ctx, append([]string{"reinit", "--force", "--wait"}, stuck...)...)
	return stuck, err
}

// Final is the cluster's state after the workload stopped.
type Final struct {
	Leader  string            `json:"leader"`
	Digests map[string]Digest `json:"digests"` // "node/table"
	ids     map[int64]bool
}

// finalState waits for convergence (every replica replays the primary's
// last WAL) and reads the tables' digests on every node and the acked ids
// on the primary.
func (c *Cluster) finalState(ctx context.Context, timeout time.Duration) (Final, error) {
	f := Final{Digests: map[string]Digest{}}
	lead, err := c.Converge(ctx, timeout)
	if err != nil {
		return f, fmt.Errorf("final convergence: %w", err)
	}
	f.Leader = lead
	for _, n := range c.Nodes {
		for _, table := range []string{"acked", "probe"} {
			d, err := c.digest(ctx, n, table)
			if err != nil {
				return f, fmt.Errorf("digest of %s on %s: %w", table, n.Name, err)
			}
			f.Digests[n.Name+"/"+table] = d
		}
	}
	f.ids, err = c.ids(ctx, c.Node(lead))
	return f, err
}

// copyLogs copies every daemon, etcd and Postgres log into dir.
func copyLogs(c *Cluster, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	copyFile := func(src, dst string) {
		in, err := os.Open(src)
		if err != nil {
			return
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dir, dst))
		if err != nil {
			return
		}
		defer out.Close()
		_, _ = io.Copy(out, in)
	}
	for _, n := range c.Nodes {
		copyFile(n.logPath, n.Name+".log")
		copyFile(filepath.Join(n.DataDir+".pgha", "postgresql.log"), n.Name+"-postgresql.log")
	}
	for _, m := range c.Etcd {
		copyFile(m.logPath, m.Name+".log")
	}
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
