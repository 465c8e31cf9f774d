package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/daemon/daemontest"
)

// TestDaemonDeathFencesPrimary: kill -9 of the primary's daemon alone
// leaves its Postgres running with nobody renewing the lease. The fence
// keeper must stop that Postgres before the lease can expire, so the old
// primary refuses writes before any other node accepts one; the sampler
// asks every node for a write every 50 ms and never finds two writable.
// Started again, the daemon rejoins as a replica of the new leader.
func TestDaemonDeathFencesPrimary(t *testing.T) {
	tc := daemontest.New(t, 3, daemontest.Options{})
	for _, n := range tc.Nodes {
		n.Start()
	}
	old := tc.WaitHealthy(3 * time.Minute)
	old.Exec("CREATE TABLE probe (id bigserial PRIMARY KEY, node text, at timestamptz DEFAULT now())")
	s := startSampler(tc, "probe")
	defer s.Stop()
	tc.WaitFor(10*time.Second, "sampler sees the leader writable", func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.lastWrite[old.Name]; !ok {
			return "no write yet"
		}
		return ""
	})

	killed := time.Now()
	old.KillDaemon()
	var next *daemontest.Node
	tc.WaitFor(60*time.Second, "a new leader takes writes", func() string {
		v := tc.View()
		if v.Leader == "" || v.Leader == old.Name {
			return "leader " + v.Leader
		}
		next = tc.ByName(v.Leader)
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.firstWrite[next.Name]; !ok {
			return "new leader " + next.Name + " not writable yet"
		}
		return ""
	})
	s.mu.Lock()
	lastOld, firstNew, double := s.lastWrite[old.Name], s.firstWrite[next.Name], append([]string(nil), s.double...)
	s.mu.Unlock()
	t.Logf("daemon killed at 0: old primary's last write %+.2fs, new leader %s's first write %+.2fs: margin %.2fs",
		lastOld.Sub(killed).Seconds(), next.Name, firstNew.Sub(killed).Seconds(), firstNew.Sub(lastOld).Seconds())
	if len(double) > 0 {
		t.Fatalf("two writable primaries seen: %v", double)
	}
	if !lastOld.Before(firstNew) {
		t.Fatalf("the old primary took a write at %s, not before the new leader's first at %s",
			lastOld.Format(time.StampMilli), firstNew.Format(time.StampMilli))
	}
	if old.PG.Instance.IsRunning() && writableNow(old) {
		t.Fatal("the old primary still takes writes with its daemon dead")
	}

	old.Start()
	tc.WaitHealthy(2 * time.Minute)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.double) > 0 {
		t.Fatalf("two writable primaries seen: %v", s.double)
	}
}

func writableNow(n *daemontest.Node) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return n.Writable(ctx, "probe")
}
