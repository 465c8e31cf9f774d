package leader

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeLease is one member's lease on the fakeEtcd. Its keepalives are
// sent when the world says so (keepalive), and the test decides whether
// they are acknowledged (setDeaf); with the world's virtual clock that
// decides how old AckedSentAt gets.
type fakeLease struct {
	e       *fakeEtcd
	store   *fakeStore
	changed chan struct{}
	// onGrant runs after each grant (the loop republishes its member key).
	onGrant func(clientv3.LeaseID)

	mu      sync.Mutex
	state   LeaseState
	wantTTL time.Duration
	// deaf: keepalives are not acknowledged (the server does not get
	// them either, so it expires the lease ttl after the last one).
	deaf bool
}

var _ memberLease = (*fakeLease)(nil)

// newFakeLease grants a lease of ttl at once (the loop's run waits for
// the first grant before its first cycle).
func newFakeLease(e *fakeEtcd, s *fakeStore, ttl time.Duration) *fakeLease {
	l := &fakeLease{e: e, store: s, changed: make(chan struct{}, 1), wantTTL: ttl}
	l.grant()
	return l
}

func (l *fakeLease) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (l *fakeLease) Changed() <-chan struct{}      { return l.changed }

func (l *fakeLease) State() LeaseState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

func (l *fakeLease) setDeaf(deaf bool) {
	l.mu.Lock()
	l.deaf = deaf
	l.mu.Unlock()
}

func (l *fakeLease) SetTTL(ttl time.Duration) {
	l.mu.Lock()
	l.wantTTL = ttl
	l.mu.Unlock()
}

func (l *fakeLease) notify() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// grant takes a new lease of the wanted ttl, in whole seconds and at
// least 2 s as Lease.grant asks etcd for.
func (l *fakeLease) grant() clientv3.LeaseID {
	l.mu.Lock()
	ttl := max((l.wantTTL+time.Second-1)/time.Second*time.Second, 2*time.Second)
	id := l.e.grant(ttl)
	l.state = LeaseState{ID: id, TTL: ttl, AckedSentAt: l.e.now(), Generation: l.state.Generation + 1}
	l.mu.Unlock()
	l.notify()
	if l.onGrant != nil {
		l.onGrant(id)
	}
	return id
}

// keepalive is one keepalive round of Lease.Run: an acknowledged one
// moves AckedSentAt to now; a lease the server lost is replaced by a new
// grant. A deaf lease or a member cut off from etcd changes nothing.
func (l *fakeLease) keepalive() {
	l.mu.Lock()
	id, deaf := l.state.ID, l.deaf
	l.mu.Unlock()
	if deaf || l.store.cut.Load() {
		return
	}
	if id == 0 {
		l.grant()
		return
	}
	if err := l.e.keepAlive(id); err != nil {
		l.mu.Lock()
		if l.state.ID == id {
			l.state.ID = 0
		}
		l.mu.Unlock()
		l.notify()
		l.grant()
		return
	}
	l.mu.Lock()
	if l.state.ID == id {
		l.state.AckedSentAt = l.e.now()
	}
	l.mu.Unlock()
}

func (l *fakeLease) Revoke(ctx context.Context) error {
	st := l.State()
	if st.ID == 0 {
		return nil
	}
	if err := l.store.reach(ctx); err != nil {
		return fmt.Errorf("leader: revoke lease %x: %w", int64(st.ID), err)
	}
	if err := l.e.revoke(st.ID); err != nil {
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

func (l *fakeLease) Regrant(ctx context.Context) error {
	if err := l.store.reach(ctx); err != nil {
		return fmt.Errorf("leader: grant lease: %w", err)
	}
	old := l.State()
	l.grant()
	if old.ID != 0 {
		if err := l.e.revoke(old.ID); err != nil {
			return fmt.Errorf("leader: revoke replaced lease %x: %w", int64(old.ID), err)
		}
	}
	return nil
}
