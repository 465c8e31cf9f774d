package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Store is one member's access to the cluster's keys: reads, member
// publication, the leader race and leader-only writes fenced by a compare
// on the leader key (value == this member and bound to its lease).
type Store struct {
	cli       *clientv3.Client
	namespace string
	scope     string
	prefix    string
	name      string
	log       *slog.Logger

	// cfgMu guards the dynamic config last read: goodConfig is the last
	// one that validated (the view keeps it while the key holds a bad
	// one), badConfigRev the revision of a bad key already logged.
	cfgMu        sync.Mutex
	goodConfig   *config.DynamicConfig
	badConfigRev int64
}

// NewStore returns the Store of member name in /<namespace>/<scope>/.
func NewStore(cli *clientv3.Client, namespace, scope, name string, log *slog.Logger) *Store {
	return &Store{cli: cli, namespace: namespace, scope: scope, prefix: Prefix(namespace, scope), name: name, log: log}
}

// Client returns the etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) key(k string) string { return s.prefix + k }

// Snapshot is a View plus what only the store needs: the lease the leader
// key is bound to.
type Snapshot struct {
	cluster.View
	LeaderLease clientv3.LeaseID
}

// Read returns the cluster's keys in one Get. A config key that does not
// validate is refused: the view keeps the last config that did (the
// defaults before any), and the problem is logged once per revision.
func (s *Store) Read(ctx context.Context) (Snapshot, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return Snapshot{}, fmt.Errorf("leader: read %s from etcd: %w", s.prefix, err)
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	good := config.DefaultDynamic()
	if s.goodConfig != nil {
		good = *s.goodConfig
	}
	v, l, cfgErr := parseView(s.scope, s.prefix, resp.Header.Revision, resp.Kvs, &good)
	switch {
	case cfgErr != nil:
		if s.badConfigRev != v.ConfigRevision {
			s.badConfigRev = v.ConfigRevision
			s.log.Error("refusing the dynamic config in etcd; keeping the last good one until it is fixed (pghactl edit-config)",
				"key", s.key(keyConfig), "revision", v.ConfigRevision, "err", oneLine(cfgErr))
		}
	case v.ConfigRevision != 0:
		if s.badConfigRev != 0 {
			s.log.Info("the dynamic config in etcd is valid again", "revision", v.ConfigRevision)
			s.badConfigRev = 0
		}
		c := v.Config
		s.goodConfig = &c
	}
	return Snapshot{View: v, LeaderLease: l}, nil
}

// oneLine joins a multi-line error (config.Problems) with "; ".
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// PublishMember writes members/<name> bound to the lease.
func (s *Store) PublishMember(ctx context.Context, lease clientv3.LeaseID, m cluster.Member) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("leader: encode member %s: %w", s.name, err)
	}
	if _, err := s.cli.Put(ctx, s.key(keyMembers+s.name), string(b), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("leader: publish member %s: %w", s.name, err)
	}
	return nil
}

// AcquireLeader takes the leader key if nobody holds it (create_revision
// == 0), bound to lease. It reports whether this member now holds it.
func (s *Store) AcquireLeader(ctx context.Context, lease clientv3.LeaseID) (bool, error) {
	k := s.key(keyLeader)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, s.name, clientv3.WithLease(lease))).Commit()
	if err != nil {
		return false, fmt.Errorf("leader: acquire leader key: %w", err)
	}
	return resp.Succeeded, nil
}

// AdoptLeader rebinds a leader key that already names this member (left by
// a previous run of the daemon) to the current lease. rev is the key's
// mod_revision as read; a changed key returns ErrConflict.
func (s *Store) AdoptLeader(ctx context.Context, lease clientv3.LeaseID, rev int64) error {
	k := s.key(keyLeader)
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(k), "=", s.name),
		clientv3.Compare(clientv3.ModRevision(k), "=", rev),
	).Then(clientv3.OpPut(k, s.name, clientv3.WithLease(lease))).Commit()
	if err != nil {
		return fmt.Errorf("leader: adopt leader key: %w", err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}

// ReleaseLeader deletes the leader key if this member holds it.
func (s *Store) ReleaseLeader(ctx context.Context) error {
	k := s.key(keyLeader)
	if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", s.name)).
		Then(clientv3.OpDelete(k)).Commit(); err != nil {
		return fmt.Errorf("leader: release leader key: %w", err)
	}
	return nil
}

// fenced runs ops only while this member holds the leader key with lease.
func (s *Store) fenced(ctx context.Context, lease clientv3.LeaseID, what string, ops ...clientv3.Op) error {
	k := s.key(keyLeader)
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(k), "=", s.name),
		clientv3.Compare(clientv3.LeaseValue(k), "=", lease),
	).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("leader: write %s: %w", what, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("leader: write %s: %w", what, ErrNotLeader)
	}
	return nil
}

// WriteStatus stores the leader's optime (fenced).
func (s *Store) WriteStatus(ctx context.Context, lease clientv3.LeaseID, st cluster.Status) error {
	b, _ := json.Marshal(st)
	return s.fenced(ctx, lease, "status", clientv3.OpPut(s.key(keyStatus), string(b)))
}

// WriteSync stores the sync key (fenced).
func (s *Store) WriteSync(ctx context.Context, lease clientv3.LeaseID, sy cluster.Sync) error {
	b, _ := json.Marshal(sy)
	return s.fenced(ctx, lease, "sync", clientv3.OpPut(s.key(keySync), string(b)))
}

// DeleteSync removes the sync key (fenced).
func (s *Store) DeleteSync(ctx context.Context, lease clientv3.LeaseID) error {
	return s.fenced(ctx, lease, "sync", clientv3.OpDelete(s.key(keySync)))
}

// WriteHistory stores the timeline history (fenced).
func (s *Store) WriteHistory(ctx context.Context, lease clientv3.LeaseID, h []cluster.HistoryEntry) error {
	return s.fenced(ctx, lease, "history", clientv3.OpPut(s.key(keyHistory), string(encodeHistory(h))))
}

// DeleteFailover deletes the failover key when its mod_revision is still
// rev (a request carried out or refused), or whatever its revision when
// rev is 0 (a new leader clears the request it answered).
func (s *Store) DeleteFailover(ctx context.Context, rev int64) error {
	err := deleteFailover(ctx, s.cli, s.key(keyFailover), rev)
	if errors.Is(err, ErrConflict) {
		return nil // changed meanwhile: the newer request stands
	}
	return err
}

// ClaimInitialize races to bootstrap the cluster: it creates the
// initialize key (empty, bound to lease so it vanishes if this member dies
// mid-bootstrap) when absent, and reports whether this member won.
func (s *Store) ClaimInitialize(ctx context.Context, lease clientv3.LeaseID) (bool, error) {
	k := s.key(keyInitialize)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, "", clientv3.WithLease(lease))).Commit()
	if err != nil {
		return false, fmt.Errorf("leader: claim initialize key: %w", err)
	}
	return resp.Succeeded, nil
}

// CompleteInitialize stores the system identifier in the initialize key
// (no lease: it outlives every member) once bootstrap succeeded.
func (s *Store) CompleteInitialize(ctx context.Context, sysid string) error {
	if _, err := s.cli.Put(ctx, s.key(keyInitialize), sysid); err != nil {
		return fmt.Errorf("leader: store system identifier in initialize key: %w", err)
	}
	return nil
}

// CancelInitialize deletes the initialize key after a failed bootstrap.
func (s *Store) CancelInitialize(ctx context.Context) error {
	k := s.key(keyInitialize)
	if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", "")).
		Then(clientv3.OpDelete(k)).Commit(); err != nil {
		return fmt.Errorf("leader: cancel initialize: %w", err)
	}
	return nil
}

// SeedConfig stores c as the dynamic config unless one exists already.
// It reports whether it wrote.
func (s *Store) SeedConfig(ctx context.Context, c config.DynamicConfig) (bool, error) {
	err := CASConfig(ctx, s.cli, s.namespace, s.scope, c, 0)
	if err == ErrConflict {
		return false, nil
	}
	return err == nil, err
}

// wakesLoop reports whether events matter at once: anything but routine
// updates of member keys and the leader's status/history (members publish
// every loop_wait; waking on those would make every member's cycle wake
// every other one).
func wakesLoop(prefix string, evs []*clientv3.Event) bool {
	for _, ev := range evs {
		k := strings.TrimPrefix(string(ev.Kv.Key), prefix)
		switch {
		case k == keyStatus || k == keyHistory:
		case strings.HasPrefix(k, keyMembers):
			if ev.Type == clientv3.EventTypeDelete || ev.IsCreate() {
				return true
			}
			// A member changing role or state (a primary announcing a
			// planned stop, a promoted replica, a crash) must reach every
			// pooler at once; position updates need not.
			if ev.PrevKv == nil || memberRouting(ev.PrevKv.Value) != memberRouting(ev.Kv.Value) {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// memberRouting is the part of a member key that routing depends on.
func memberRouting(value []byte) string {
	var m struct {
		State cluster.State `json:"state"`
		Role  cluster.Role  `json:"role"`
	}
	if json.Unmarshal(value, &m) != nil {
		return "?"
	}
	return string(m.Role) + "/" + string(m.State)
}

// Watch signals notify (without blocking) on every change under the
// cluster prefix until ctx ends, re-establishing the watch after errors.
func (s *Store) Watch(ctx context.Context, notify chan<- struct{}) error {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithPrevKV())
		for resp := range ch {
			if resp.Err() != nil {
				s.log.Debug("etcd watch error; re-watching", "err", resp.Err())
				break
			}
			if !wakesLoop(s.prefix, resp.Events) {
				continue
			}
			select {
			case notify <- struct{}{}:
			default:
			}
		}
		cancel()
		if !sleepCtx(ctx, 500*time.Millisecond) {
			break
		}
	}
	return nil
}
