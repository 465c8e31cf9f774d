package leader

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Options configure a Loop.
type Options struct {
	// Name is this member's name; Tags its tags.
	Name string
	Tags config.Tags
	// ConnURL (postgres://host:port/postgres) and APIURL
	// (http or https://host:port/patroni) are published in the member key.
	ConnURL string
	APIURL  string
	// PeerTLS is how peers' https REST APIs are checked and this node
	// shows itself to them (restapi.ClientTLS); nil: system roots.
	PeerTLS *tls.Config
	// Bootstrap seeds the config key when the cluster has none.
	Bootstrap config.DynamicConfig
	// OnFence is called first when this node must stop taking writes
	// (fencing, switchover, handover): the pooler pauses there. It must
	// not block.
	OnFence func()
	// OnCycle, when set, gets each cycle's duration (metrics).
	OnCycle func(time.Duration)
	// OnView, when set, gets each view read from etcd before the cycle
	// decides and acts (so a start or clone uses the cluster's settings).
	OnView func(cluster.View)
	// OnFailover, when set, is called after this node took the leader key
	// of a cluster that had lost its leader, without a request (metrics).
	OnFailover func()
	// Fence, when set, is told how long this node may take writes (the
	// fence keeper that outlives the daemon).
	Fence WriteFence
	// OnEvent, when set, is told when the local Postgres started,
	// stopped or changed role (callbacks). It runs on the loop's
	// goroutine and must not block.
	OnEvent func(PostgresEvent, cluster.Role)
	Log     *slog.Logger
}

// Loop is the HA loop of one member.
type Loop struct {
	store *Store
	lease *Lease
	pg    Postgres
	opt   Options
	log   *slog.Logger

	http     *http.Client
	wake     chan struct{}
	requests chan request
	killed   chan struct{}
	killOnce sync.Once

	mu       sync.Mutex
	view     cluster.View
	viewOK   bool
	lastSeen time.Time
	lastLoop time.Time
	local    Local
	isLeader bool
	pubRole  cluster.Role
	changed  chan struct{}

	// primaryRunning is set when the last cycle saw a writable local
	// Postgres; the fencing watchdog reads it.
	primaryRunning atomic.Bool
	// writeLease is the lease that gates this node's writes (its leader
	// key or initialize claim is bound to it), 0 when none does; the
	// watchdog goroutine renews the fence's permission while it is set.
	writeLease atomic.Int64

	// loop-goroutine state
	role          cluster.Role
	state         cluster.State
	following     string
	crashTried    bool
	rewindFailed  bool
	cleanStop     bool
	lastLeader    string
	lastTimeline  int64
	lastPosition  int64
	lastStatusPut time.Time
	lastDecision  string
	slotSet       string
	candidateWait candidateWait
	slotErr       string
	slotErrAt     time.Time
	failed        failures
	observed      observation
	// memberDoc is the member key last published (memberMu).
	memberMu  sync.Mutex
	memberDoc cluster.Member
	// syncOn: synchronous_standby_names was managed (synchronous_mode).
	syncOn     bool
	slotSynced time.Time
}

type request struct {
	fn   func(ctx context.Context) error
	done chan error
}

// NewLoop returns the loop of member opt.Name on store, driving pg.
func NewLoop(store *Store, pg Postgres, opt Options) *Loop {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Bootstrap.TTL == 0 {
		opt.Bootstrap = config.DefaultDynamic()
	}
	log := opt.Log.With("member", opt.Name)
	l := &Loop{
		store:    store,
		lease:    NewLease(store.Client(), opt.Bootstrap.TTL.D(), log),
		pg:       pg,
		opt:      opt,
		log:      log,
		http:     peerClient(opt.PeerTLS),
		wake:     make(chan struct{}, 1),
		requests: make(chan request),
		killed:   make(chan struct{}),
		changed:  make(chan struct{}),
		role:     cluster.RoleUninitialized,
		state:    cluster.StateStopped,
	}
	l.lease.onGrant = l.republishMember
	// A leader's first cycle settles synchronous_standby_names either way,
	// whatever a previous daemon left in the running server's file.
	l.syncOn = true
	return l
}

// View returns the latest cluster snapshot and whether the last etcd read
// succeeded.
func (l *Loop) View() (cluster.View, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.view, l.viewOK
}

// Info is the loop's own state for status endpoints.
type Info struct {
	// IsLeader: holds the leader key with a lease confirmed recently
	// enough to still be valid.
	IsLeader bool
	// DCSLastSeen is when etcd last answered; LastLoop when the loop last
	// finished a cycle.
	DCSLastSeen time.Time
	LastLoop    time.Time
	Local       Local
	// Role is the role this member last published (primary, replica...).
	Role cluster.Role
}

// Info returns the loop's own state.
func (l *Loop) Info() Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	leader := l.isLeader && time.Now().Before(l.lease.State().Deadline(0))
	return Info{IsLeader: leader, DCSLastSeen: l.lastSeen, LastLoop: l.lastLoop, Local: l.local, Role: l.pubRole}
}

// Changed returns a channel closed at the next notable change: etcd
// reachability, leadership, the local Postgres' running/recovery state,
// or the view's routing (leader, pause, failover request, members' role,
// state, address, tags). Call it again after each close.
func (l *Loop) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *Loop) publish(v cluster.View, ok bool, local Local, isLeader bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	notable := ok != l.viewOK || isLeader != l.isLeader || local.Running != l.local.Running ||
		local.InRecovery != l.local.InRecovery || routingKey(v) != routingKey(l.view)
	l.view, l.viewOK, l.local, l.isLeader = v, ok, local, isLeader
	l.pubRole = l.role // publish runs on the loop goroutine, which owns role
	if ok {
		l.lastSeen = time.Now()
	}
	l.lastLoop = time.Now()
	if notable {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// publishView hands subscribers a view just read from etcd, keeping the
// loop's own state (local Postgres, leadership) as last published.
func (l *Loop) publishView(v cluster.View) {
	l.mu.Lock()
	defer l.mu.Unlock()
	notable := !l.viewOK || routingKey(v) != routingKey(l.view)
	l.view, l.viewOK, l.lastSeen = v, true, time.Now()
	if notable {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// routingKey is what subscribers act on in a view: leader, pause, pending
// failover, and each member's role, state, address and load-balancing tag
// (positions, which move every cycle, are left out).
func routingKey(v cluster.View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%v|%v|%d", v.Leader, v.Config.Pause, v.Failover != nil, v.Config.TTL)
	for _, m := range v.Members {
		fmt.Fprintf(&b, "|%s,%s,%s,%s,%v,%v", m.Name, m.Role, m.State, m.ConnURL, m.Tags.NoLoadBalance, m.Tags.NoFailover)
	}
	return b.String()
}

// SetTags replaces this member's tags (config reload); they apply from
// the next cycle.
func (l *Loop) SetTags(t config.Tags) {
	l.mu.Lock()
	l.opt.Tags = t
	l.mu.Unlock()
	l.Wake()
}

func (l *Loop) tags() config.Tags {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opt.Tags
}

// Wake makes the loop run a cycle now.
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Kill makes Run return at once without stopping Postgres, handing over
// or revoking the lease: what kill -9 of the daemon leaves behind (tests).
func (l *Loop) Kill() { l.killOnce.Do(func() { close(l.killed) }) }

// Do runs fn inside the loop between two cycles (restart, reinitialize)
// and returns its error.
func (l *Loop) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	r := request{fn: fn, done: make(chan error, 1)}
	select {
	case l.requests <- r:
	case <-ctx.Done():
		return fmt.Errorf("leader: loop busy: %w", ctx.Err())
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("leader: waiting for the loop: %w", ctx.Err())
	}
}

// Run runs the loop until ctx ends, then stops cleanly (the leader hands
// over, Postgres is stopped, the lease revoked).
func (l *Loop) Run(ctx context.Context) error {
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLease()
	g, gctx := errgroup.WithContext(leaseCtx)
	g.Go(func() error { return l.lease.Run(gctx) })
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	g.Go(func() error { return l.store.Watch(watchCtx, l.wake) })
	g.Go(func() error { return l.watchdog(watchCtx) })
	err := l.run(ctx)
	stopWatch()
	stopLease()
	_ = g.Wait()
	return err
}

func (l *Loop) run(ctx context.Context) error {
	// Wait for the first lease.
	for l.lease.State().ID == 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-l.killed:
			return nil
		case <-l.lease.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Publish the member key at once, so the leader can prepare (e.g. a
	// replication slot) while this node clones or rewinds in its first cycle.
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	if local, err := l.pg.Status(sctx); err == nil {
		l.noteRole(local, false, "daemon started")
		l.publishMember(sctx, local)
	}
	scancel()
	seeded := false
	for {
		if !seeded {
			sctx, cancel := context.WithTimeout(ctx, l.opt.Bootstrap.RetryTimeout.D())
			wrote, err := l.store.SeedConfig(sctx, l.opt.Bootstrap)
			cancel()
			seeded = err == nil
			if wrote {
				l.log.Info("seeded the dynamic config from bootstrap.dcs")
			}
		}
		wait := l.cycle(ctx, false)
		select {
		case <-ctx.Done():
			l.shutdown()
			return nil
		case <-l.killed:
			return nil
		case <-l.wake:
		case <-l.lease.Changed():
		case r := <-l.requests:
			r.done <- r.fn(ctx)
		case <-time.After(wait):
		}
		select {
		case <-l.killed:
			return nil
		default:
		}
	}
}

// shutdown runs the last cycle: hand over or stop, then revoke the lease.
func (l *Loop) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l.cycle(ctx, true)
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	if err := l.lease.Revoke(rctx); err != nil {
		l.log.Warn("revoke lease on shutdown", "err", err)
	}
}

// margin is how long before the lease's earliest server-side expiry the
// leader stops taking writes.
// A quarter of the ttl (at least 1 s) leaves time to stop Postgres even
// on a loaded machine; the leader still survives two lost keepalives.
func margin(ttl time.Duration) time.Duration {
	return max(ttl/4, time.Second)
}

// cycle gathers facts, decides, acts and publishes. It returns how long to
// sleep before the next cycle.
func (l *Loop) cycle(ctx context.Context, shuttingDown bool) time.Duration {
	if l.opt.OnCycle != nil {
		defer func(start time.Time) { l.opt.OnCycle(time.Since(start)) }(time.Now())
	}
	l.mu.Lock()
	prev := l.view
	l.mu.Unlock()
	cfg := prev.Config
	if cfg.TTL == 0 {
		cfg = l.opt.Bootstrap
	}
	ls := l.lease.State()
	deadline := ls.Deadline(margin(ls.TTL))
	// Never let an etcd read run past the fencing deadline of a primary.
	readTimeout := cfg.RetryTimeout.D()
	if l.role == cluster.RolePrimary && !deadline.IsZero() {
		readTimeout = min(readTimeout, max(time.Until(deadline), 50*time.Millisecond))
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	snap, err := l.store.Read(rctx)
	cancel()
	viewOK := err == nil
	v := prev
	if viewOK {
		v = snap.View
		cfg = v.Config
		if l.opt.OnView != nil {
			l.opt.OnView(v)
		}
		// Subscribers (the pooler's routing above all) get the new view
		// now, not after peers are asked and an action is carried out.
		l.publishView(v)
		if cfg.TTL > 0 && cfg.TTL.D() != ls.TTL && ls.ID != 0 {
			// A new ttl applies at the next grant. A non-leader regrants
			// now (its member key is republished this cycle); the leader
			// keeps its lease, bound to the leader key, until it steps down.
			l.lease.SetTTL(cfg.TTL.D())
			if v.Leader != l.opt.Name {
				l.log.Info("ttl changed; renewing the member lease", "ttl", cfg.TTL.D().String())
				rctx, cancel := context.WithTimeout(ctx, cfg.RetryTimeout.D())
				if err := l.lease.Regrant(rctx); err != nil {
					l.log.Warn("regrant lease", "err", err)
				}
				cancel()
				ls = l.lease.State()
			}
		}
	} else {
		l.log.Warn("cannot read the cluster from etcd", "err", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	local, err := l.pg.Status(sctx)
	scancel()
	if err != nil {
		l.log.Warn("cannot read the local postgres status", "err", err)
	}
	if local.Running && l.lastLeader == l.opt.Name && !local.InRecovery {
		l.crashTried = false
	}
	f := Facts{
		Me:                l.opt.Name,
		Tags:              l.tags(),
		View:              v,
		ViewOK:            viewOK,
		LeaderLeaseMine:   snap.LeaderLease == ls.ID,
		Now:               time.Now(),
		LeaseDeadline:     deadline,
		Local:             local,
		Following:         l.following,
		Peers:             l.peers(ctx, v, viewOK, local),
		CrashRestartTried: l.crashTried,
		RewindFailed:      l.rewindFailed,
		CleanStop:         l.cleanStop,
		ShuttingDown:      shuttingDown,
	}
	if viewOK && v.Leader == l.opt.Name && v.Failover != nil && local.Running && !local.InRecovery {
		// A switchover hands over only to a replica streaming from here.
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		if ds, err := l.pg.Streaming(dctx); err == nil {
			f.Downstream = ds
		} else {
			l.log.Warn("switchover: which replicas stream from here", "err", err)
		}
		dcancel()
	}
	f.CandidateWaitSince = l.candidateWait.note(v, viewOK, l.opt.Name, f.Now)
	a := Decide(f)
	if l.failed.holds(a, f.Now) {
		// The same action failed a moment ago: wait out its backoff
		// instead of retrying at every wake-up.
		l.log.Debug("ha decision held back", "action", string(a.Kind), "why", l.failed.String())
		a = act(Nothing, "", "backing off: %s", l.failed.String())
	}
	// Actions are INFO; waiting is INFO when its reason changes (numbers
	// aside), so an operator sees why a node is idle without a line a second.
	key := string(a.Kind) + strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, a.Why)
	if (a.Kind != Nothing && a.Kind != Keep) || key != l.lastDecision {
		l.log.Info("ha decision", "action", string(a.Kind), "target", a.Target, "why", a.Why)
	} else {
		l.log.Debug("ha decision", "action", string(a.Kind), "why", a.Why)
	}
	l.lastDecision = key
	if viewOK && a.Kind != Nothing && a.Kind != Keep && a.Kind != Fence {
		// Announce this member before a long action (clone, rewind, start),
		// so the leader can prepare its replication slot meanwhile.
		// A lost lease is being regranted right now: wait for it briefly.
		for i := 0; i < 20 && l.lease.State().ID == 0 && ctx.Err() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		pctx, pcancel := context.WithTimeout(ctx, min(cfg.RetryTimeout.D(), time.Second))
		l.publishMember(pctx, local)
		pcancel()
	}
	err = l.execute(ctx, a, f)
	if log, repeats := l.failed.record(a, err, time.Now(), cfg.LoopWait.D()); log {
		l.log.Error("ha action failed", "action", string(a.Kind), "target", a.Target, "err", err,
			"repeats_not_logged", repeats, "retry_in", time.Until(l.failed.until).Round(time.Millisecond).String())
	}
	if viewOK && a.Kind == Nothing && local.Running && local.InRecovery {
		// A replica keeps the slots of the members that cascade from it.
		l.syncSlots(ctx, v, false, false)
	}
	if a.Kind != Nothing && a.Kind != Keep {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		if st, err := l.pg.Status(sctx); err == nil {
			local = st
		}
		scancel()
	}
	holds := viewOK && v.Leader == l.opt.Name && f.LeaderLeaseMine
	if viewOK {
		// Re-read so the role line, status write and subscribers see the
		// outcome of the action.
		rctx, cancel := context.WithTimeout(ctx, cfg.RetryTimeout.D())
		if s, err := l.store.Read(rctx); err == nil {
			v = s.View
			holds = v.Leader == l.opt.Name && s.LeaderLease == l.lease.State().ID
		}
		cancel()
	}
	l.noteRole(local, holds, a.Why)
	l.primaryRunning.Store(MaybeWritable(local))
	if viewOK {
		// A failed read proves nothing: the key stays bound to the lease
		// while keepalives are acknowledged, and the permission lapses on
		// its own when they are not.
		if holds {
			l.writeLease.Store(int64(l.lease.State().ID))
		} else {
			l.writeLease.Store(0)
		}
	}
	if !shuttingDown && viewOK {
		// A primary never lets an etcd write run past its fencing deadline.
		wt := cfg.RetryTimeout.D()
		if local.Running && !local.InRecovery {
			wt = min(wt, max(time.Until(l.lease.State().Deadline(margin(ls.TTL))), 50*time.Millisecond))
		}
		pctx, pcancel := context.WithTimeout(ctx, wt)
		l.publishMember(pctx, local)
		if holds && local.Running && !local.InRecovery {
			if err := l.store.WriteStatus(pctx, l.lease.State().ID, cluster.Status{Optime: local.Position}); err != nil {
				l.log.Debug("write status", "err", err)
			}
		}
		pcancel()
	}
	l.publish(v, viewOK, local, holds)
	wait := cfg.LoopWait.D()
	if local.Running && !local.InRecovery {
		if d := time.Until(l.lease.State().Deadline(margin(ls.TTL))); d < wait {
			wait = max(d, 10*time.Millisecond)
		}
	}
	return wait
}

// candidateWait remembers since when this member, named in a planned
// switchover whose leader stepped down, has been waiting to take over.
type candidateWait struct {
	rev   int64
	since time.Time
}

// note returns since when the member has waited for the failover request
// in v (zero when it is not a waiting candidate).
func (w *candidateWait) note(v cluster.View, viewOK bool, me string, now time.Time) time.Time {
	if !viewOK {
		return w.since
	}
	fo := v.Failover
	if fo == nil || fo.Member != me || fo.Leader == "" || v.Leader != "" {
		*w = candidateWait{}
		return time.Time{}
	}
	if w.rev != fo.Revision || w.since.IsZero() {
		*w = candidateWait{rev: fo.Revision, since: now}
	}
	return w.since
}
