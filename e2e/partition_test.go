package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/leader"
)

// sampler asks every node every 50 ms to take a write and records, per
// round, which nodes were writable.
type sampler struct {
	mu         sync.Mutex
	rounds     int
	double     []string // rounds where two nodes took writes
	lastWrite  map[string]time.Time
	firstWrite map[string]time.Time
	stop       chan struct{}
	done       chan struct{}
}

func startSampler(tc *daemontest.Cluster, table string) *sampler {
	s := &sampler{lastWrite: map[string]time.Time{}, firstWrite: map[string]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			var wg sync.WaitGroup
			ok := make([]bool, len(tc.Nodes))
			at := make([]time.Time, len(tc.Nodes))
			for i, n := range tc.Nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
					defer cancel()
					ok[i] = n.Writable(ctx, table)
					at[i] = time.Now()
				}()
			}
			wg.Wait()
			s.mu.Lock()
			s.rounds++
			var w []string
			for i, n := range tc.Nodes {
				if ok[i] {
					w = append(w, n.Name)
					s.lastWrite[n.Name] = at[i]
					if _, seen := s.firstWrite[n.Name]; !seen {
						s.firstWrite[n.Name] = at[i]
					}
				}
			}
			if len(w) > 1 {
				s.double = append(s.double, time.Now().Format(time.StampMilli)+" "+w[0]+"+"+w[1])
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) Stop() {
	close(s.stop)
	<-s.done
}

// TestLeaderCutFromEtcd: the leader's etcd traffic is cut. It must stop
// taking writes before its lease expires (the leader key vanishes), a
// replica takes over, a sampler asking every node for a write every 50 ms
// never finds two writable primaries, and once the cut heals the old
// leader rejoins as a replica.
func TestLeaderCutFromEtcd(t *testing.T) {
	tc := daemontest.New(t, 3, daemontest.Options{WithProxy: true})
	for _, n := range tc.Nodes {
		n.Start()
	}
	old := tc.WaitHealthy(3 * time.Minute)
	old.Exec("CREATE TABLE probe (id bigserial PRIMARY KEY, node text, at timestamptz DEFAULT now())")

	// Watch the leader key directly (not through any proxy).
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + old.Proxy.Target}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leaderKey := leader.Prefix("/service/", "e2e") + "leader"
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	// Watch from the revision read now: a deletion after it is reported
	// however late the watch stream is set up.
	now, err := cli.Get(wctx, leaderKey)
	if err != nil {
		t.Fatal(err)
	}
	deleted := make(chan time.Time, 1)
	go func() {
		for resp := range cli.Watch(wctx, leaderKey, clientv3.WithRev(now.Header.Revision+1)) {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					select {
					case deleted <- time.Now():
					default:
					}
				}
			}
		}
	}()

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

	cut := time.Now()
	old.Proxy.Cut()
	var expired time.Time
	select {
	case expired = <-deleted:
	case <-time.After(30 * time.Second):
		t.Fatal("the cut leader's key never expired")
	}
	var next *daemontest.Node
	tc.WaitFor(60*time.Second, "a new leader takes writes", func() string {
		v, err := leader.ReadView(context.Background(), cli, "/service/", "e2e")
		if err != nil || v.Leader == "" || v.Leader == old.Name {
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
	lastOld := s.lastWrite[old.Name]
	firstNew := s.firstWrite[next.Name]
	double := append([]string(nil), s.double...)
	rounds := s.rounds
	s.mu.Unlock()
	t.Logf("cut at 0; old leader's last write %+.2fs; lease expired %+.2fs; new leader %s first write %+.2fs; %d sampler rounds",
		lastOld.Sub(cut).Seconds(), expired.Sub(cut).Seconds(), next.Name, firstNew.Sub(cut).Seconds(), rounds)
	if len(double) > 0 {
		t.Fatalf("two writable primaries seen: %v", double)
	}
	if !lastOld.Before(expired) {
		t.Fatalf("the cut leader took a write at %s, after its lease expired at %s", lastOld.Format(time.StampMilli), expired.Format(time.StampMilli))
	}
	if !lastOld.Before(firstNew) {
		t.Fatalf("old leader's last write %s is not before the new leader's first %s", lastOld.Format(time.StampMilli), firstNew.Format(time.StampMilli))
	}

	// Heal: the old leader rejoins as a replica of the new one.
	old.Proxy.Restore()
	tc.WaitHealthy(2*time.Minute, "node1", "node2", "node3")
	if v := tc.View(); v.Leader != next.Name {
		t.Fatalf("leader %s after healing, want %s", v.Leader, next.Name)
	}

	// A switchover back to the healed node: requested through the failover
	// key, done within seconds, and the sampler still never sees two
	// writable primaries.
	asked := time.Now()
	if err := leader.RequestFailover(context.Background(), cli, "/service/", "e2e", cluster.Failover{Leader: next.Name, Member: old.Name}); err != nil {
		t.Fatal(err)
	}
	tc.WaitFor(30*time.Second, "switchover to "+old.Name, func() string {
		v, err := leader.ReadView(context.Background(), cli, "/service/", "e2e")
		if err != nil || v.Leader != old.Name || v.Failover != nil {
			return fmt.Sprintf("leader %q, failover key %+v", v.Leader, v.Failover)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if w, ok := s.lastWrite[old.Name]; !ok || w.Before(asked) {
			return old.Name + " not writable yet"
		}
		return ""
	})
	t.Logf("switchover %s -> %s: %s writable %.1fs after the request", next.Name, old.Name, old.Name, time.Since(asked).Seconds())
	tc.WaitHealthy(time.Minute, "node1", "node2", "node3")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.double) > 0 {
		t.Fatalf("two writable primaries seen: %v", s.double)
	}
}
