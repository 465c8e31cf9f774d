package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// An in-memory etcd for the sequence tests: one keyspace shared by every
// member, with revisions, leases and transactions as etcd has them, so
// that fakeStore can say each compare of store.go in the same words.

// fakeEtcd is the shared etcd server.
type fakeEtcd struct {
	now func() time.Time

	mu       sync.Mutex
	rev      int64
	kvs      map[string]*mvccpb.KeyValue
	leases   map[clientv3.LeaseID]*fakeEtcdLease
	lastID   clientv3.LeaseID
	watchers map[*fakeWatcher]struct{}
	// onWrite, when set, hears each key a transaction wrote ("" value: a
	// delete), under the lock: the world's event log.
	onWrite func(key string, ev *clientv3.Event)
}

// fakeEtcdLease is a granted lease: it expires on the server ttl after
// the last keepalive it received.
type fakeEtcdLease struct {
	ttl     time.Duration
	expires time.Time
}

type fakeWatcher struct {
	prefix string
	fn     func([]*clientv3.Event)
}

func newFakeEtcd(now func() time.Time) *fakeEtcd {
	return &fakeEtcd{now: now, rev: 1, kvs: map[string]*mvccpb.KeyValue{},
		leases: map[clientv3.LeaseID]*fakeEtcdLease{}, watchers: map[*fakeWatcher]struct{}{}}
}

// cmpOn is what a compare looks at, as clientv3.CreateRevision,
// ModRevision, Value and LeaseValue.
type cmpOn int

const (
	onCreate cmpOn = iota
	onMod
	onValue
	onLease
)

// fcmp is one "=" compare of a transaction.
type fcmp struct {
	key   string
	on    cmpOn
	value string // onValue
	n     int64  // onCreate, onMod, onLease
}

// fop is a put (with a lease, 0 for none) or a delete.
type fop struct {
	del   bool
	key   string
	value string
	lease clientv3.LeaseID
}

func createIs(k string, rev int64) fcmp          { return fcmp{key: k, on: onCreate, n: rev} }
func modIs(k string, rev int64) fcmp             { return fcmp{key: k, on: onMod, n: rev} }
func valueIs(k, v string) fcmp                   { return fcmp{key: k, on: onValue, value: v} }
func leaseIs(k string, id clientv3.LeaseID) fcmp { return fcmp{key: k, on: onLease, n: int64(id)} }
func putOp(k, v string, lease clientv3.LeaseID) fop {
	return fop{key: k, value: v, lease: lease}
}
func delOp(k string) fop { return fop{del: true, key: k} }

// put writes k unconditionally, without a lease (an operator's tool).
func (e *fakeEtcd) put(k, v string) error {
	_, err := e.txn(nil, []fop{putOp(k, v, 0)})
	return err
}

// get returns a copy of key k, nil when absent.
func (e *fakeEtcd) get(k string) *mvccpb.KeyValue {
	e.mu.Lock()
	defer e.mu.Unlock()
	return cloneKV(e.kvs[k])
}

func cloneKV(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return &mvccpb.KeyValue{Key: slices.Clone(kv.Key), Value: slices.Clone(kv.Value), CreateRevision: kv.CreateRevision,
		ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
}

// compare is etcd's applyCompare for "=": a compare on the value of a
// missing key fails; other compares of a missing key see zeros.
func (e *fakeEtcd) compare(c fcmp) bool {
	kv := e.kvs[c.key]
	if kv == nil {
		if c.on == onValue {
			return false
		}
		kv = &mvccpb.KeyValue{}
	}
	switch c.on {
	case onCreate:
		return kv.CreateRevision == c.n
	case onMod:
		return kv.ModRevision == c.n
	case onValue:
		return string(kv.Value) == c.value
	default:
		return kv.Lease == c.n
	}
}

// txn runs If(cmps...).Then(then...) and reports whether the compares
// held. A put bound to a lease that does not exist fails the whole
// transaction (etcd's "requested lease not found"); a transaction that
// changes something takes one new revision.
func (e *fakeEtcd) txn(cmps []fcmp, then []fop) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range cmps {
		if !e.compare(c) {
			return false, nil
		}
	}
	for _, o := range then {
		if !o.del && o.lease != 0 && e.leases[o.lease] == nil {
			return false, rpctypes.ErrLeaseNotFound
		}
	}
	e.apply(then)
	return true, nil
}

// apply writes ops at one new revision (when they change anything) and
// tells the watchers. The caller holds e.mu.
func (e *fakeEtcd) apply(ops []fop) {
	changes := false
	for _, o := range ops {
		if !o.del || e.kvs[o.key] != nil {
			changes = true
		}
	}
	if !changes {
		return
	}
	e.rev++
	var evs []*clientv3.Event
	for _, o := range ops {
		prev := e.kvs[o.key]
		if o.del {
			if prev == nil {
				continue
			}
			delete(e.kvs, o.key)
			evs = append(evs, &clientv3.Event{Type: clientv3.EventTypeDelete, Kv: &mvccpb.KeyValue{Key: []byte(o.key), ModRevision: e.rev}, PrevKv: prev})
			continue
		}
		kv := &mvccpb.KeyValue{Key: []byte(o.key), Value: []byte(o.value), CreateRevision: e.rev, ModRevision: e.rev, Version: 1, Lease: int64(o.lease)}
		if prev != nil {
			kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		}
		e.kvs[o.key] = kv
		evs = append(evs, &clientv3.Event{Type: clientv3.EventTypePut, Kv: cloneKV(kv), PrevKv: prev})
	}
	for _, ev := range evs {
		if e.onWrite != nil {
			e.onWrite(string(ev.Kv.Key), ev)
		}
	}
	for w := range e.watchers {
		var mine []*clientv3.Event
		for _, ev := range evs {
			if strings.HasPrefix(string(ev.Kv.Key), w.prefix) {
				mine = append(mine, ev)
			}
		}
		if len(mine) > 0 {
			w.fn(mine)
		}
	}
}

// rangePrefix is a prefix Get: the keys in order, and the revision.
func (e *fakeEtcd) rangePrefix(prefix string) ([]*mvccpb.KeyValue, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*mvccpb.KeyValue
	for k, kv := range e.kvs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, cloneKV(kv))
		}
	}
	slices.SortFunc(out, func(a, b *mvccpb.KeyValue) int { return strings.Compare(string(a.Key), string(b.Key)) })
	return out, e.rev
}

// grant makes a lease of ttl, alive for ttl from now.
func (e *fakeEtcd) grant(ttl time.Duration) clientv3.LeaseID {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lastID++
	e.leases[e.lastID] = &fakeEtcdLease{ttl: ttl, expires: e.now().Add(ttl)}
	return e.lastID
}

// keepAlive renews lease id: it now expires ttl from now.
func (e *fakeEtcd) keepAlive(id clientv3.LeaseID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.leases[id]
	if l == nil {
		return rpctypes.ErrLeaseNotFound
	}
	l.expires = e.now().Add(l.ttl)
	return nil
}

// revoke ends lease id and deletes the keys bound to it, as one revision.
func (e *fakeEtcd) revoke(id clientv3.LeaseID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leases[id] == nil {
		return rpctypes.ErrLeaseNotFound
	}
	e.dropLease(id)
	return nil
}

func (e *fakeEtcd) dropLease(id clientv3.LeaseID) {
	delete(e.leases, id)
	var ops []fop
	for k, kv := range e.kvs {
		if kv.Lease == int64(id) {
			ops = append(ops, delOp(k))
		}
	}
	slices.SortFunc(ops, func(a, b fop) int { return strings.Compare(a.key, b.key) })
	e.apply(ops)
}

// expire ends every lease whose ttl ran out without a keepalive, and
// returns them.
func (e *fakeEtcd) expire() []clientv3.LeaseID {
	e.mu.Lock()
	defer e.mu.Unlock()
	var gone []clientv3.LeaseID
	for id, l := range e.leases {
		if !e.now().Before(l.expires) {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		e.dropLease(id)
	}
	return gone
}

// expiresAt is when lease id expires on the server (zero: not alive).
func (e *fakeEtcd) expiresAt(id clientv3.LeaseID) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.leases[id]; l != nil {
		return l.expires
	}
	return time.Time{}
}

// errCutOff is what a member cut off from etcd gets for every request.
var errCutOff = errors.New("fake etcd: context deadline exceeded (member cut off from etcd)")

// fakeStore is one member's keyStore on the shared fakeEtcd: each method
// makes the compares of its namesake in store.go.
type fakeStore struct {
	e      *fakeEtcd
	scope  string
	prefix string
	name   string
	// cut: the member cannot reach etcd (every request fails).
	cut atomic.Bool

	mu         sync.Mutex
	goodConfig *config.DynamicConfig
}

var _ keyStore = (*fakeStore)(nil)

func newFakeStore(e *fakeEtcd, scope, name string) *fakeStore {
	return &fakeStore{e: e, scope: scope, prefix: Prefix("/service/", scope), name: name}
}

func (s *fakeStore) key(k string) string { return s.prefix + k }

func (s *fakeStore) reach(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.cut.Load() {
		return errCutOff
	}
	return nil
}

// do runs one transaction of this member.
func (s *fakeStore) do(ctx context.Context, what string, cmps []fcmp, then ...fop) (bool, error) {
	if err := s.reach(ctx); err != nil {
		return false, fmt.Errorf("leader: %s: %w", what, err)
	}
	ok, err := s.e.txn(cmps, then)
	if err != nil {
		return false, fmt.Errorf("leader: %s: %w", what, err)
	}
	return ok, nil
}

// Read is Store.Read: one prefix Get; a config key that does not
// validate is refused for the last good one.
func (s *fakeStore) Read(ctx context.Context) (Snapshot, error) {
	if err := s.reach(ctx); err != nil {
		return Snapshot{}, fmt.Errorf("leader: read %s from etcd: %w", s.prefix, err)
	}
	kvs, rev := s.e.rangePrefix(s.prefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	good := config.DefaultDynamic()
	if s.goodConfig != nil {
		good = *s.goodConfig
	}
	v, l, cfgErr := parseView(s.scope, s.prefix, rev, kvs, &good)
	if cfgErr == nil && v.ConfigRevision != 0 {
		c := v.Config
		s.goodConfig = &c
	}
	return Snapshot{View: v, LeaderLease: l}, nil
}

// Watch is Store.Watch: it signals notify for the events wakesLoop
// picks, until ctx ends.
func (s *fakeStore) Watch(ctx context.Context, notify chan<- struct{}) error {
	w := &fakeWatcher{prefix: s.prefix, fn: func(evs []*clientv3.Event) {
		if s.cut.Load() || !wakesLoop(s.prefix, evs) {
			return
		}
		select {
		case notify <- struct{}{}:
		default:
		}
	}}
	s.e.mu.Lock()
	s.e.watchers[w] = struct{}{}
	s.e.mu.Unlock()
	<-ctx.Done()
	s.e.mu.Lock()
	delete(s.e.watchers, w)
	s.e.mu.Unlock()
	return nil
}

// SeedConfig is Store.SeedConfig (CASConfig with revision 0).
func (s *fakeStore) SeedConfig(ctx context.Context, c config.DynamicConfig) (bool, error) {
	if err := c.Validate(); err != nil {
		return false, fmt.Errorf("leader: refuse to store config: %w", err)
	}
	b, err := config.EncodeDynamic(nil, c)
	if err != nil {
		return false, err
	}
	k := s.key(keyConfig)
	return s.do(ctx, "write config key", []fcmp{modIs(k, 0)}, putOp(k, string(b), 0))
}

func (s *fakeStore) PublishMember(ctx context.Context, lease clientv3.LeaseID, m cluster.Member) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = s.do(ctx, "publish member "+s.name, nil, putOp(s.key(keyMembers+s.name), string(b), lease))
	return err
}

func (s *fakeStore) AcquireLeader(ctx context.Context, lease clientv3.LeaseID) (bool, error) {
	k := s.key(keyLeader)
	return s.do(ctx, "acquire leader key", []fcmp{createIs(k, 0)}, putOp(k, s.name, lease))
}

func (s *fakeStore) AdoptLeader(ctx context.Context, lease clientv3.LeaseID, rev int64) error {
	k := s.key(keyLeader)
	ok, err := s.do(ctx, "adopt leader key", []fcmp{valueIs(k, s.name), modIs(k, rev)}, putOp(k, s.name, lease))
	if err == nil && !ok {
		return ErrConflict
	}
	return err
}

func (s *fakeStore) ReleaseLeader(ctx context.Context) error {
	k := s.key(keyLeader)
	_, err := s.do(ctx, "release leader key", []fcmp{valueIs(k, s.name)}, delOp(k))
	return err
}

// fenced runs ops only while this member holds the leader key with lease.
func (s *fakeStore) fenced(ctx context.Context, lease clientv3.LeaseID, what string, ops ...fop) error {
	k := s.key(keyLeader)
	ok, err := s.do(ctx, "write "+what, []fcmp{valueIs(k, s.name), leaseIs(k, lease)}, ops...)
	if err == nil && !ok {
		return fmt.Errorf("leader: write %s: %w", what, ErrNotLeader)
	}
	return err
}

func (s *fakeStore) WriteStatus(ctx context.Context, lease clientv3.LeaseID, st cluster.Status) error {
	b, _ := json.Marshal(st)
	return s.fenced(ctx, lease, "status", putOp(s.key(keyStatus), string(b), 0))
}

func (s *fakeStore) WriteSync(ctx context.Context, lease clientv3.LeaseID, sy cluster.Sync) error {
	b, _ := json.Marshal(sy)
	return s.fenced(ctx, lease, "sync", putOp(s.key(keySync), string(b), 0))
}

func (s *fakeStore) DeleteSync(ctx context.Context, lease clientv3.LeaseID) error {
	return s.fenced(ctx, lease, "sync", delOp(s.key(keySync)))
}

func (s *fakeStore) WriteHistory(ctx context.Context, lease clientv3.LeaseID, h []cluster.HistoryEntry) error {
	return s.fenced(ctx, lease, "history", putOp(s.key(keyHistory), string(encodeHistory(h)), 0))
}

func (s *fakeStore) DeleteFailover(ctx context.Context, rev int64) error {
	k := s.key(keyFailover)
	var cmp []fcmp
	if rev != 0 {
		cmp = []fcmp{modIs(k, rev)}
	}
	_, err := s.do(ctx, "delete failover key", cmp, delOp(k))
	return err
}

func (s *fakeStore) ClaimInitialize(ctx context.Context, lease clientv3.LeaseID) (bool, error) {
	k := s.key(keyInitialize)
	return s.do(ctx, "claim initialize key", []fcmp{createIs(k, 0)}, putOp(k, "", lease))
}

func (s *fakeStore) CompleteInitialize(ctx context.Context, sysid string) error {
	_, err := s.do(ctx, "store system identifier in initialize key", nil, putOp(s.key(keyInitialize), sysid, 0))
	return err
}

func (s *fakeStore) CancelInitialize(ctx context.Context) error {
	k := s.key(keyInitialize)
	_, err := s.do(ctx, "cancel initialize", []fcmp{valueIs(k, "")}, delOp(k))
	return err
}
