package leader

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// keyStore is what the loop needs from etcd: the scope's keys. *Store is
// the real one; tests drive the loop through an in-memory one.
type keyStore interface {
	Read(ctx context.Context) (Snapshot, error)
	Watch(ctx context.Context, notify chan<- struct{}) error
	SeedConfig(ctx context.Context, c config.DynamicConfig) (bool, error)
	PublishMember(ctx context.Context, lease clientv3.LeaseID, m cluster.Member) error
	WriteStatus(ctx context.Context, lease clientv3.LeaseID, st cluster.Status) error
	AcquireLeader(ctx context.Context, lease clientv3.LeaseID) (bool, error)
	AdoptLeader(ctx context.Context, lease clientv3.LeaseID, rev int64) error
	ReleaseLeader(ctx context.Context) error
	ClaimInitialize(ctx context.Context, lease clientv3.LeaseID) (bool, error)
	CancelInitialize(ctx context.Context) error
	CompleteInitialize(ctx context.Context, sysid string) error
	WriteHistory(ctx context.Context, lease clientv3.LeaseID, h []cluster.HistoryEntry) error
	DeleteFailover(ctx context.Context, rev int64) error
	WriteSync(ctx context.Context, lease clientv3.LeaseID, sy cluster.Sync) error
	DeleteSync(ctx context.Context, lease clientv3.LeaseID) error
}

// memberLease is the member's etcd lease as the loop uses it. *Lease is
// the real one.
type memberLease interface {
	Run(ctx context.Context) error
	State() LeaseState
	Changed() <-chan struct{}
	Revoke(ctx context.Context) error
	Regrant(ctx context.Context) error
	SetTTL(ttl time.Duration)
}

var (
	_ keyStore    = (*Store)(nil)
	_ memberLease = (*Lease)(nil)
)
