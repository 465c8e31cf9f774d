package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseState is what the loop knows about its member lease.
type LeaseState struct {
	// ID is the current lease, 0 before the first grant succeeded.
	ID clientv3.LeaseID
	// TTL is the lease's TTL as granted.
	TTL time.Duration
	// AckedSentAt is the send time of the last grant or keepalive etcd
	// acknowledged. The server's expiry is at or after AckedSentAt+TTL.
	AckedSentAt time.Time
	// Generation counts grants; it changes when the lease was lost and a
	// new one was granted (the leader key was lost with the old one).
	Generation int
}

// Deadline is the instant before which a leader holding this lease is
// sure the lease is still alive on the server, minus margin (DESIGN rule 1).
func (s LeaseState) Deadline(margin time.Duration) time.Time {
	if s.ID == 0 {
		return time.Time{}
	}
	return s.AckedSentAt.Add(s.TTL - margin)
}

// Lease grants the member lease and keeps it alive every ttl/3 with
// single keepalives, so it knows the send time of each acknowledged one.
// When the lease is lost (expired on the server) it grants a new one.
type Lease struct {
	cli *clientv3.Client
	// members, when set, are one client per etcd member: each keepalive
	// goes to all of them at once and the first answer counts.
	members []*clientv3.Client
	log     *slog.Logger

	mu      sync.Mutex
	state   LeaseState
	wantTTL time.Duration
	changed chan struct{}
	// onGrant runs (on the lease's goroutine) after each grant.
	onGrant func(clientv3.LeaseID)
}

// NewLease returns a Lease that will grant ttl-second leases once Run starts.
func NewLease(cli *clientv3.Client, ttl time.Duration, log *slog.Logger) *Lease {
	return &Lease{cli: cli, log: log, wantTTL: ttl, changed: make(chan struct{}, 1)}
}

// State returns the current lease state.
func (l *Lease) State() LeaseState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Changed is signalled when a lease is granted or lost.
func (l *Lease) Changed() <-chan struct{} { return l.changed }

// SetTTL asks for a different TTL. It takes effect at the next grant:
// Regrant, or when the lease is lost.
func (l *Lease) SetTTL(ttl time.Duration) {
	l.mu.Lock()
	l.wantTTL = ttl
	l.mu.Unlock()
}

func (l *Lease) notify() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Run grants the lease and keeps it alive until ctx ends, granting a new
// one whenever it is lost. It does not revoke on exit: call Revoke for a
// clean handover; a killed daemon's lease simply expires.
func (l *Lease) Run(ctx context.Context) error {
	for {
		if l.State().ID != 0 { // replaced by Regrant: keep the new one alive
			l.keepAlive(ctx)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if err := l.grant(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.log.Warn("etcd lease grant failed; retrying", "err", err)
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
			continue
		}
		l.keepAlive(ctx)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Revoke revokes the current lease (clean shutdown: the member key and a
// held leader key vanish at once, so others need not wait for the ttl).
func (l *Lease) Revoke(ctx context.Context) error {
	st := l.State()
	if st.ID == 0 {
		return nil
	}
	if _, err := l.cli.Revoke(ctx, st.ID); err != nil {
		return fmt.Errorf("leader: revoke lease %x: %w", int64(st.ID), err)
	}
	l.mu.Lock()
	if l.state.ID == st.ID {
		l.state.ID = 0
	}
	l.mu.Unlock()
	l.notify()
	return nil
}

// Regrant replaces the lease with one of the TTL last set: grant the new
// one, then revoke the old. Only for a member that holds no leader key.
func (l *Lease) Regrant(ctx context.Context) error {
	old := l.State()
	if err := l.grant(ctx); err != nil {
		return err
	}
	if old.ID != 0 {
		if _, err := l.cli.Revoke(ctx, old.ID); err != nil {
			return fmt.Errorf("leader: revoke replaced lease %x: %w", int64(old.ID), err)
		}
	}
	return nil
}

func (l *Lease) grant(ctx context.Context) error {
	l.mu.Lock()
	ttl := l.wantTTL
	l.mu.Unlock()
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs < 2 {
		secs = 2
	}
	gctx, cancel := context.WithTimeout(ctx, ttl/3)
	defer cancel()
	sent := time.Now()
	resp, err := l.cli.Grant(gctx, secs)
	if err != nil {
		return fmt.Errorf("leader: grant %ds lease: %w", secs, err)
	}
	l.mu.Lock()
	l.state = LeaseState{ID: resp.ID, TTL: time.Duration(resp.TTL) * time.Second, AckedSentAt: sent, Generation: l.state.Generation + 1}
	l.mu.Unlock()
	l.log.Debug("etcd lease granted", "lease", fmt.Sprintf("%x", int64(resp.ID)), "ttl", resp.TTL)
	l.notify()
	if l.onGrant != nil {
		l.onGrant(resp.ID)
	}
	return nil
}

// keepAlive renews the current lease every ttl/3 (retrying sooner after a
// failure) and returns when the lease is gone or ctx ends.
func (l *Lease) keepAlive(ctx context.Context) {
	st := l.State()
	every := st.TTL / 3
	// A renewal that is not answered soon will not be: a member that lost
	// its etcd leader holds requests until an election ends and then
	// drops them. So each attempt is short, asks members to refuse at
	// once while they have no leader, and a failed one is retried quickly:
	// the first attempt after a new etcd leader is elected renews.
	attempt := min(every, time.Second)
	retry := min(every, 200*time.Millisecond)
	wait := every
	for {
		if !sleepCtx(ctx, wait) {
			return
		}
		kctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), attempt)
		sent := time.Now()
		resp, err := l.keepAliveOnce(kctx, st.ID)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.mu.Lock()
			if l.state.ID == st.ID {
				l.state.AckedSentAt = sent
			}
			l.mu.Unlock()
			wait = every
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			l.log.Warn("etcd lease expired; granting a new one", "lease", fmt.Sprintf("%x", int64(st.ID)))
			l.mu.Lock()
			if l.state.ID == st.ID {
				l.state.ID = 0
			}
			l.mu.Unlock()
			l.notify()
			return
		default:
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("etcd lease keepalive failed", "err", err,
				"acked_ago", time.Since(l.State().AckedSentAt).Round(time.Millisecond))
			wait = retry
		}
		l.mu.Lock()
		gone := l.state.ID != st.ID
		l.mu.Unlock()
		if gone {
			return
		}
	}
}

// keepAliveOnce renews the lease once, through every member client at
// once when there are several: the first acknowledgement wins, and a
// member that cannot answer (cut off, no quorum) costs nothing; a lease
// the cluster no longer knows is reported as soon as any member says so.
func (l *Lease) keepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	if len(l.members) == 0 {
		return l.cli.KeepAliveOnce(ctx, id)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		resp *clientv3.LeaseKeepAliveResponse
		err  error
	}
	answers := make(chan answer, len(l.members))
	for _, c := range l.members {
		go func() {
			resp, err := c.KeepAliveOnce(ctx, id)
			answers <- answer{resp, err}
		}()
	}
	var last error
	for range l.members {
		a := <-answers
		if a.err == nil || errors.Is(a.err, rpctypes.ErrLeaseNotFound) {
			return a.resp, a.err
		}
		last = a.err
	}
	return nil, last
}

// SetMemberClients makes keepalives go to every member at once (see
// keepAliveOnce). Call it before Run.
func (l *Lease) SetMemberClients(clis []*clientv3.Client) { l.members = clis }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
