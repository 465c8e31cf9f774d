package leader

import (
	"context"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// runLeaseOnMembers starts a lease with ttl on a three-member etcd
// cluster, keepalives going to every member, and waits for it to be
// granted. It returns the cluster and the lease; both end with the test.
func runLeaseOnMembers(t *testing.T, ttl time.Duration) (*pgtest.EtcdCluster, *Lease) {
	t.Helper()
	ec := pgtest.StartEtcdBinaryCluster(t, 3)
	e := config.Etcd{Endpoints: ec.Endpoints(), DialTimeout: config.Duration(2 * time.Second)}
	cli, err := NewClient(e)
	if err != nil {
		t.Fatal(err)
	}
	members, err := NewMemberClients(e)
	if err != nil {
		cli.Close()
		t.Fatal(err)
	}
	l := NewLease(cli, ttl, pgtest.Logger(t))
	l.SetMemberClients(members)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		for _, c := range members {
			c.Close()
		}
		cli.Close()
	})
	for deadline := time.Now().Add(30 * time.Second); l.State().ID == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no lease granted")
		}
	}
	return ec, l
}

// oldestAck watches the lease for d and returns the age of its oldest
// acknowledged keepalive over that time; it fails the test if the lease
// changes (was lost and granted anew).
func oldestAck(t *testing.T, l *Lease, d time.Duration, while string) time.Duration {
	t.Helper()
	first := l.State().ID
	worst := time.Duration(0)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		st := l.State()
		if st.ID != first {
			t.Fatalf("the lease was lost (now %x) while %s", int64(st.ID), while)
		}
		worst = max(worst, time.Since(st.AckedSentAt))
	}
	return worst
}

// TestLeaseSurvivesSilentMember: with three etcd members, the member the
// main client talks to goes silent (frozen: its connections stay open,
// nothing answers, as in a partition that drops packets). Keepalives sent
// to every member at once keep the lease renewed, so a leader would not
// fence itself over one lost member of three.
func TestLeaseSurvivesSilentMember(t *testing.T) {
	ttl := 6 * time.Second
	ec, l := runLeaseOnMembers(t, ttl)
	// Freeze the member the main client's first endpoint names; then for
	// two ttls the lease's last acknowledged keepalive must never be older
	// than the write margin allows.
	ec.Members[0].Freeze()
	defer ec.Members[0].Thaw()
	worst := oldestAck(t, l, 2*ttl, "one member of three was silent")
	t.Logf("oldest acknowledged keepalive while a member was silent: %s (write margin ends at %s)", worst.Round(time.Millisecond), ttl-margin(ttl))
	// Keepalives go every ttl/3; one that waits for the silent member
	// (until gRPC's keepalive gives up on it, about 7 s) would come close
	// to the margin, or past it.
	if bound := ttl/3 + time.Second; worst >= bound {
		t.Fatalf("the last acknowledged keepalive was %s old (bound %s): renewals waited for the silent member", worst, bound)
	}
}

// TestLeaseSurvivesEtcdLeaderLoss: the etcd leader itself goes silent;
// the others elect a new one within a second or two, and the lease must
// be renewed soon after, well within the write margin.
func TestLeaseSurvivesEtcdLeaderLoss(t *testing.T) {
	ttl := 6 * time.Second
	ec, l := runLeaseOnMembers(t, ttl)
	cli := l.cli
	sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
	leaderIdx := -1
	for i, m := range ec.Members {
		st, err := cli.Status(sctx, m.ClientURL)
		if err == nil && st.Header.MemberId == st.Leader {
			leaderIdx = i
		}
	}
	scancel()
	if leaderIdx < 0 {
		t.Fatal("no etcd leader found")
	}
	ec.Members[leaderIdx].Freeze()
	defer ec.Members[leaderIdx].Thaw()
	worst := oldestAck(t, l, 2*ttl, "the etcd leader was silent")
	t.Logf("oldest acknowledged keepalive while etcd elected a new leader: %s (write margin ends at %s)", worst.Round(time.Millisecond), ttl-margin(ttl))
	if worst >= ttl-margin(ttl) {
		t.Fatalf("the last acknowledged keepalive was %s old: a leader would have fenced itself", worst)
	}
}
