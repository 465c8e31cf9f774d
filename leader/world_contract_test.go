package leader

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

// The store contract: what the loop relies on from its keyStore, checked
// against the in-memory fakeStore (fast tier) and against Store on a
// real etcd (integration tier), so the sequence tests run on the same
// semantics as the daemon.

// storeHarness gives the contract stores of one scope and a way to make
// and end leases.
type storeHarness struct {
	store  func(name string) keyStore
	grant  func() clientv3.LeaseID
	revoke func(clientv3.LeaseID)
	// put writes a key of the scope as an operator's tool does.
	put func(key, value string)
}

func TestFakeStoreContract(t *testing.T) {
	clock := &vclock{t: time.Now()}
	e := newFakeEtcd(clock.Now)
	storeContract(t, storeHarness{
		store:  func(name string) keyStore { return newFakeStore(e, "contract", name) },
		grant:  func() clientv3.LeaseID { return e.grant(10 * time.Second) },
		revoke: func(id clientv3.LeaseID) { _ = e.revoke(id) },
		put: func(k, v string) {
			if err := e.put(Prefix("/service/", "contract")+k, v); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestStoreContract(t *testing.T) {
	endpoints := pgtest.StartEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx := testkit.Ctx(t, time.Minute)
	storeContract(t, storeHarness{
		store: func(name string) keyStore {
			return NewStore(cli, "/service/", "contract", name, slog.New(slog.DiscardHandler))
		},
		grant: func() clientv3.LeaseID {
			g, err := cli.Grant(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			return g.ID
		},
		revoke: func(id clientv3.LeaseID) {
			if _, err := cli.Revoke(ctx, id); err != nil {
				t.Fatal(err)
			}
		},
		put: func(k, v string) {
			if _, err := cli.Put(ctx, Prefix("/service/", "contract")+k, v); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func storeContract(t *testing.T, h storeHarness) {
	ctx := testkit.Ctx(t, time.Minute)
	a, b := h.store("a"), h.store("b")
	la, lb := h.grant(), h.grant()
	read := func() Snapshot {
		t.Helper()
		s, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// The config is seeded once.
	if wrote, err := a.SeedConfig(ctx, config.DefaultDynamic()); !wrote || err != nil {
		t.Fatalf("first seed: %v %v", wrote, err)
	}
	if wrote, err := b.SeedConfig(ctx, config.DefaultDynamic()); wrote || err != nil {
		t.Fatalf("second seed wrote %v (%v)", wrote, err)
	}

	// The initialize race has one winner; the system identifier outlives
	// the winner's lease; a completed key is not cancelled.
	if ok, err := a.ClaimInitialize(ctx, la); !ok || err != nil {
		t.Fatalf("a claims initialize: %v %v", ok, err)
	}
	if ok, err := b.ClaimInitialize(ctx, lb); ok || err != nil {
		t.Fatalf("b claims initialize too: %v %v", ok, err)
	}
	if s := read(); !s.Bootstrapping {
		t.Fatal("claimed initialize key does not read as bootstrapping")
	}
	must(a.CompleteInitialize(ctx, "7301"))
	must(b.CancelInitialize(ctx))
	if s := read(); s.Initialize != "7301" || s.Bootstrapping {
		t.Fatalf("initialize %q bootstrapping %v", s.Initialize, s.Bootstrapping)
	}

	// Members are bound to their lease.
	must(a.PublishMember(ctx, la, cluster.Member{ConnURL: "postgres://a:5432/postgres", Role: cluster.RolePrimary, State: cluster.StateRunning}))
	must(b.PublishMember(ctx, lb, cluster.Member{ConnURL: "postgres://b:5432/postgres", Role: cluster.RoleReplica, State: cluster.StateStreaming}))
	if s := read(); len(s.Members) != 2 || s.Members[0].Name != "a" || s.Members[1].Role != cluster.RoleReplica {
		t.Fatalf("members %+v", s.Members)
	}

	// The leader key is created only when absent, bound to the lease.
	if ok, err := a.AcquireLeader(ctx, la); !ok || err != nil {
		t.Fatalf("a acquires: %v %v", ok, err)
	}
	if ok, err := b.AcquireLeader(ctx, lb); ok || err != nil {
		t.Fatalf("b acquires a held key: %v %v", ok, err)
	}
	s := read()
	if s.Leader != "a" || s.LeaderLease != la {
		t.Fatalf("leader %q on lease %x, want a on %x", s.Leader, s.LeaderLease, la)
	}

	// Leader-only writes need the key with this very lease.
	if err := b.WriteStatus(ctx, lb, cluster.Status{Optime: 1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("b writes status: %v", err)
	}
	if err := a.WriteStatus(ctx, lb, cluster.Status{Optime: 1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a writes status with another lease: %v", err)
	}
	must(a.WriteStatus(ctx, la, cluster.Status{Optime: 4242}))
	must(a.WriteSync(ctx, la, cluster.Sync{Leader: "a", SyncStandby: "b"}))
	hist := []cluster.HistoryEntry{{Timeline: 1, LSN: 77, Reason: "failover: x", Timestamp: time.Unix(1700000000, 0), NewLeader: "a"}}
	must(a.WriteHistory(ctx, la, hist))
	s = read()
	if s.Status.Optime != 4242 || s.Sync == nil || s.Sync.SyncStandby != "b" || len(s.History) != 1 || s.History[0].LSN != 77 {
		t.Fatalf("status %+v sync %+v history %+v", s.Status, s.Sync, s.History)
	}
	if err := b.DeleteSync(ctx, lb); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("b deletes sync: %v", err)
	}
	must(a.DeleteSync(ctx, la))
	if s := read(); s.Sync != nil {
		t.Fatal("sync key survived its deletion")
	}

	// A restarted daemon adopts its key at the revision it read.
	la2 := h.grant()
	if err := a.AdoptLeader(ctx, la2, s.LeaderRevision-1); !errors.Is(err, ErrConflict) {
		t.Fatalf("adopt at a stale revision: %v", err)
	}
	if err := b.AdoptLeader(ctx, lb, s.LeaderRevision); !errors.Is(err, ErrConflict) {
		t.Fatalf("b adopts a's key: %v", err)
	}
	must(a.AdoptLeader(ctx, la2, s.LeaderRevision))
	if s := read(); s.LeaderLease != la2 {
		t.Fatalf("adopted key on lease %x, want %x", s.LeaderLease, la2)
	}

	// Release: only the holder's.
	must(b.ReleaseLeader(ctx))
	if s := read(); s.Leader != "a" {
		t.Fatal("b released a's key")
	}
	must(a.ReleaseLeader(ctx))
	if s := read(); s.Leader != "" {
		t.Fatal("a's release left the key")
	}

	// A key bound to a lease that is gone cannot be taken; an ended lease
	// takes its keys along.
	h.revoke(la)
	if ok, err := a.AcquireLeader(ctx, la); ok || err == nil {
		t.Fatalf("acquire on a revoked lease: %v %v", ok, err)
	}
	if ok, err := b.AcquireLeader(ctx, lb); !ok || err != nil {
		t.Fatalf("b acquires: %v %v", ok, err)
	}
	h.revoke(lb)
	if s := read(); s.Leader != "" || len(s.Members) != 0 || s.Initialize != "7301" {
		t.Fatalf("after the leases ended: leader %q, members %d, initialize %q", s.Leader, len(s.Members), s.Initialize)
	}

	// Failover requests: a stale revision leaves a newer request alone.
	h.put(keyFailover, `{"leader":"a","member":"b"}`)
	fo := read().Failover
	if fo == nil || fo.Member != "b" {
		t.Fatalf("failover %+v", fo)
	}
	must(a.DeleteFailover(ctx, fo.Revision-1))
	if read().Failover == nil {
		t.Fatal("a stale DeleteFailover deleted the request")
	}
	must(a.DeleteFailover(ctx, fo.Revision))
	if read().Failover != nil {
		t.Fatal("DeleteFailover left the request")
	}
	h.put(keyFailover, `{"member":"b"}`)
	must(b.DeleteFailover(ctx, 0))
	if read().Failover != nil {
		t.Fatal("DeleteFailover(0) left the request")
	}

	// A config key that does not validate is refused for the last good one.
	h.put(keyConfig, `{"ttl":1}`)
	if s := read(); s.Config.TTL.D() != 10*time.Second {
		t.Fatalf("a bad config key was taken: ttl %s", s.Config.TTL.D())
	}
}
