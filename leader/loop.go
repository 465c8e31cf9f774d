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

	clientv3 "go.etcd.io/etcd/client/v3"
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
	// Version is pgha's version, published in the member key.
	Version string
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
	// MemberClients, when set, are one etcd client per member: lease
	// keepalives go to all of them at once (leader.NewMemberClients).
	MemberClients []*clientv3.Client
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
	store keyStore
	lease memberLease
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
	// fenceRefused: the fence refused the last write permission asked
	// (published in the member key as watchdog_failed).
	fenceRefused atomic.Bool

	// Owned by the loop goroutine: the state machine's memory, and what
	// the loop last published and logged.
	mem          Memory
	role         cluster.Role  // the role last published
	state        cluster.State // the state last published (or announced)
	lastDecision string        // the last "ha decision" line, numbers aside
	slots        slotBook
	observed     observation
	// now and sleep are the loop's clock: the wall clock and a sleep
	// that ends early with its context. Tests that drive whole
	// sequences through cycle replace them with a virtual clock.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) bool
	// memberDoc is the member key last published (memberMu).
	memberMu  sync.Mutex
	memberDoc cluster.Member
}

// slotBook is when the loop last made the replication slots right, and
// the last error it logged about them.
type slotBook struct {
	set    string
	synced time.Time
	err    string
	errAt  time.Time
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
	lease := NewLease(store.Client(), opt.Bootstrap.TTL.D(), opt.Log.With("member", opt.Name))
	lease.SetMemberClients(opt.MemberClients)
	l := newLoop(store, lease, pg, opt)
	lease.onGrant = l.republishMember
	return l
}

// newLoop builds a loop on any key store and lease (tests use in-memory
// ones).
func newLoop(store keyStore, lease memberLease, pg Postgres, opt Options) *Loop {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Bootstrap.TTL == 0 {
		opt.Bootstrap = config.DefaultDynamic()
	}
	log := opt.Log.With("member", opt.Name)
	l := &Loop{
		store:    store,
		lease:    lease,
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
		now:      time.Now,
		sleep:    sleepCtx,
	}
	// A leader's first cycle settles synchronous_standby_names either way,
	// whatever a previous daemon left in the running server's file.
	l.mem = initialMemory()
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

func (l *Loop) isKilled() bool {
	select {
	case <-l.killed:
		return true
	default:
		return false
	}
}

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
			if l.isKilled() {
				// Killed and cancelled both (SIGUSR2 detach): the kill wins,
				// whichever the select picked; no shutdown cycle.
				return nil
			}
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

// candidateWait remembers since when this member, named in a planned
// switchover whose leader stepped down, has been waiting to take over.
type candidateWait struct {
	rev   int64
	since time.Time
}

// next is w after seeing v at now: it starts counting when this member
// becomes a waiting candidate of a failover request, and forgets it when
// it is not one any more. A failed read changes nothing.
func (w candidateWait) next(v cluster.View, viewOK bool, me string, now time.Time) candidateWait {
	if !viewOK {
		return w
	}
	fo := v.Failover
	if fo == nil || fo.Member != me || fo.Leader == "" || v.Leader != "" {
		return candidateWait{}
	}
	if w.rev != fo.Revision || w.since.IsZero() {
		return candidateWait{rev: fo.Revision, since: now}
	}
	return w
}
