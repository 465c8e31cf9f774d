package leader_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/leader"
)

// startEtcd runs an embedded etcd for the test and returns a client.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	pgtest.SkipIfShort(t, "etcd")
	e, err := daemon.StartEmbeddedEtcd(context.Background(), t.TempDir(), "test", testkit.FreeAddr(t), testkit.FreeAddr(t), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestStoreLeaderRaceFencingAndView(t *testing.T) {
	cli := startEtcd(t)
	ctx := testkit.Ctx(t, time.Minute)
	names := []string{"a", "b", "c"}
	stores := map[string]*leader.Store{}
	leases := map[string]clientv3.LeaseID{}
	for _, n := range names {
		stores[n] = leader.NewStore(cli, "/service/", "pg", n, quiet())
		g, err := cli.Grant(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		leases[n] = g.ID
		if err := stores[n].PublishMember(ctx, g.ID, cluster.Member{ConnURL: "postgres://127.0.0.1:5432/postgres", Role: cluster.RoleReplica, State: cluster.StateRunning}); err != nil {
			t.Fatal(err)
		}
	}
	// initialize race: exactly one winner.
	won := 0
	for _, n := range names {
		ok, err := stores[n].ClaimInitialize(ctx, leases[n])
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("initialize race: %d winners, want 1", won)
	}
	// leader race: exactly one winner, and only it can write fenced keys.
	var holder string
	for _, n := range names {
		ok, err := stores[n].AcquireLeader(ctx, leases[n])
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if holder != "" {
				t.Fatalf("both %s and %s acquired the leader key", holder, n)
			}
			holder = n
		}
	}
	if holder != "a" {
		t.Fatalf("leader = %q, want a (first to try)", holder)
	}
	if err := stores["b"].WriteStatus(ctx, leases["b"], cluster.Status{Optime: 1}); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("fenced write by non-leader: err = %v, want ErrNotLeader", err)
	}
	// A member with the leader's name but another lease is fenced out too.
	if err := stores["a"].WriteStatus(ctx, leases["b"], cluster.Status{Optime: 1}); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("fenced write with a foreign lease: err = %v, want ErrNotLeader", err)
	}
	if err := stores["a"].WriteStatus(ctx, leases["a"], cluster.Status{Optime: 4242}); err != nil {
		t.Fatal(err)
	}
	hist := []cluster.HistoryEntry{{Timeline: 1, LSN: 100, Reason: "no recovery target specified", Timestamp: time.Now(), NewLeader: "a"}}
	if err := stores["a"].WriteHistory(ctx, leases["a"], hist); err != nil {
		t.Fatal(err)
	}
	if err := stores["a"].CompleteInitialize(ctx, "7300000000000000001"); err != nil {
		t.Fatal(err)
	}
	seeded, err := stores["b"].SeedConfig(ctx, config.DefaultDynamic())
	if err != nil || !seeded {
		t.Fatalf("seed config: %v %v", seeded, err)
	}
	if seeded, _ := stores["c"].SeedConfig(ctx, config.DefaultDynamic()); seeded {
		t.Fatal("config seeded twice")
	}

	v, err := leader.ReadView(ctx, cli, "/service/", "pg")
	if err != nil {
		t.Fatal(err)
	}
	if v.Leader != "a" || len(v.Members) != 3 || v.Status.Optime != 4242 || v.Initialize != "7300000000000000001" {
		t.Fatalf("view = leader %q, %d members, optime %d, init %q", v.Leader, len(v.Members), v.Status.Optime, v.Initialize)
	}
	if len(v.History) != 1 || v.History[0].NewLeader != "a" || v.History[0].LSN != 100 {
		t.Fatalf("history = %+v", v.History)
	}
	if v.Config.TTL.D() != 10*time.Second || v.ConfigRevision == 0 {
		t.Fatalf("config = %+v rev %d", v.Config, v.ConfigRevision)
	}
	if m, ok := v.Member("b"); !ok || m.ConnURL == "" || m.Role != cluster.RoleReplica {
		t.Fatalf("member b = %+v %v", m, ok)
	}

	// config CAS: the stale revision loses.
	c := v.Config
	c.LoopWait = config.Duration(2 * time.Second)
	if err := leader.CASConfig(ctx, cli, "/service/", "pg", c, v.ConfigRevision); err != nil {
		t.Fatal(err)
	}
	if err := leader.CASConfig(ctx, cli, "/service/", "pg", c, v.ConfigRevision); !errors.Is(err, leader.ErrConflict) {
		t.Fatalf("stale CAS: err = %v, want ErrConflict", err)
	}
	bad := c
	bad.TTL = config.Duration(time.Second)
	if err := leader.CASConfig(ctx, cli, "/service/", "pg", bad, 0); err == nil {
		t.Fatal("CAS accepted ttl 1s")
	}

	// failover request round trip.
	if err := leader.RequestFailover(ctx, cli, "/service/", "pg", cluster.Failover{Leader: "a", Member: "c"}); err != nil {
		t.Fatal(err)
	}
	v, _ = leader.ReadView(ctx, cli, "/service/", "pg")
	if v.Failover == nil || v.Failover.Member != "c" || v.Failover.Leader != "a" {
		t.Fatalf("failover = %+v", v.Failover)
	}

	// release: b can take it afterwards; revoking b's lease frees it again.
	if err := stores["a"].ReleaseLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := stores["b"].AcquireLeader(ctx, leases["b"]); !ok {
		t.Fatal("b could not take a released leader key")
	}
	if _, err := cli.Revoke(ctx, leases["b"]); err != nil {
		t.Fatal(err)
	}
	v, _ = leader.ReadView(ctx, cli, "/service/", "pg")
	if v.Leader != "" || len(v.Members) != 2 {
		t.Fatalf("after revoking b's lease: leader %q, %d members", v.Leader, len(v.Members))
	}
}

func TestLeaseKeepaliveExpiryAndWatch(t *testing.T) {
	cli := startEtcd(t)
	ctx := testkit.Ctx(t, time.Minute)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	l := leader.NewLease(cli, 3*time.Second, quiet())
	done := make(chan error, 1)
	go func() { done <- l.Run(runCtx) }()
	st := waitLease(t, l, func(s leader.LeaseState) bool { return s.ID != 0 })
	first := st.AckedSentAt
	// keepalives advance the acknowledged send time every ttl/3.
	st = waitLease(t, l, func(s leader.LeaseState) bool { return s.AckedSentAt.Sub(first) >= 900*time.Millisecond })
	if d := time.Until(st.Deadline(500 * time.Millisecond)); d <= 0 || d > 3*time.Second {
		t.Fatalf("deadline in %s, want within (0, 3s]", d)
	}
	s := leader.NewStore(cli, "/service/", "pg", "a", quiet())
	notify := make(chan struct{}, 1)
	go s.Watch(runCtx, notify)
	// The watch is up once it reports a write: a failover request, made
	// again every 2 s until one is reported (delivery takes milliseconds,
	// so no report of an earlier request is still on its way).
	testkit.Eventually(t, 20*time.Second, "the watch reports a failover request", func() error {
		if err := leader.RequestFailover(ctx, cli, "/service/", "pg", cluster.Failover{Member: "b"}); err != nil {
			return err
		}
		select {
		case <-notify:
			return nil
		case <-time.After(2 * time.Second):
			return errors.New("no notification")
		}
	})
	if ok, err := s.AcquireLeader(ctx, st.ID); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	select {
	case <-notify:
	case <-time.After(10 * time.Second):
		t.Fatal("no watch notification for the leader key")
	}
	// The lease is lost on the server (revoked behind its back): Lease
	// notices and grants a new one; the leader key went with the old one.
	if _, err := cli.Revoke(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	waitLease(t, l, func(s leader.LeaseState) bool { return s.ID != 0 && s.ID != st.ID && s.Generation > st.Generation })
	v, _ := leader.ReadView(ctx, cli, "/service/", "pg")
	if v.Leader != "" {
		t.Fatalf("leader key survived its lease: %q", v.Leader)
	}
	// Regrant with a new ttl: a new lease, the old one revoked, and the
	// new one kept alive past its ttl.
	cur := l.State()
	l.SetTTL(2 * time.Second)
	if err := l.Regrant(ctx); err != nil {
		t.Fatal(err)
	}
	re := l.State()
	if re.ID == cur.ID || re.TTL != 2*time.Second {
		t.Fatalf("after regrant: %+v (was %+v)", re, cur)
	}
	if ttl, err := cli.TimeToLive(ctx, cur.ID); err == nil && ttl.TTL > 0 {
		t.Fatalf("old lease still alive: %+v", ttl)
	}
	// Checked all along (not once after a sleep): TimeToLive says -1 for
	// a lease that is gone, and rounds what is left down to whole seconds
	// (0 for a live lease less than a second from its expiry).
	testkit.Eventually(t, 15*time.Second, "the regranted lease alive past its ttl", func() error {
		if ttl, err := cli.TimeToLive(ctx, re.ID); err != nil || ttl.TTL < 0 || l.State().ID != re.ID {
			t.Fatalf("regranted lease not kept alive: %+v %v (state %+v)", ttl, err, l.State())
		}
		return testkit.Missing(time.Since(re.AckedSentAt) > re.TTL+time.Second, "not yet past its ttl")
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitLease(t *testing.T, l *leader.Lease, ok func(leader.LeaseState) bool) leader.LeaseState {
	t.Helper()
	var s leader.LeaseState
	testkit.Eventually(t, 15*time.Second, "lease state", func() error {
		s = l.State()
		return testkit.Missing(ok(s), fmt.Sprintf("never matched: %+v", s))
	})
	return s
}
