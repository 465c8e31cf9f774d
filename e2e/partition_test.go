package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
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

func startSampler(tc *testCluster, table string) *sampler {
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
			ok := make([]bool, len(tc.nodes))
			at := make([]time.Time, len(tc.nodes))
			for i, n := range tc.nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
					defer cancel()
					ok[i] = n.writable(ctx, table)
					at[i] = time.Now()
				}()
			}
			wg.Wait()
			s.mu.Lock()
			s.rounds++
			var w []string
			for i, n := range tc.nodes {
				if ok[i] {
					w = append(w, n.name)
					s.lastWrite[n.name] = at[i]
					if _, seen := s.firstWrite[n.name]; !seen {
						s.firstWrite[n.name] = at[i]
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
	tc := newCluster(t, 3, true, nil)
	for _, n := range tc.nodes {
		n.start()
	}
	old := tc.waitHealthy(3 * time.Minute)
	old.exec("CREATE TABLE probe (id bigserial PRIMARY KEY, node text, at timestamptz DEFAULT now())")

	// Watch the leader key directly (not through any proxy).
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + old.proxy.target}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leaderKey := leader.Prefix("/service/", "e2e") + "leader"
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	deleted := make(chan time.Time, 1)
	go func() {
		for resp := range cli.Watch(wctx, leaderKey) {
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
	time.Sleep(300 * time.Millisecond) // the watch is established

	s := startSampler(tc, "probe")
	defer s.Stop()
	tc.waitFor(10*time.Second, "sampler sees the leader writable", func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.lastWrite[old.name]; !ok {
			return "no write yet"
		}
		return ""
	})

	cut := time.Now()
	old.proxy.Cut()
	var expired time.Time
	select {
	case expired = <-deleted:
	case <-time.After(30 * time.Second):
		t.Fatal("the cut leader's key never expired")
	}
	var next *node
	tc.waitFor(60*time.Second, "a new leader takes writes", func() string {
		v, err := leader.ReadView(context.Background(), cli, "/service/", "e2e")
		if err != nil || v.Leader == "" || v.Leader == old.name {
			return "leader " + v.Leader
		}
		next = tc.byName(v.Leader)
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.firstWrite[next.name]; !ok {
			return "new leader " + next.name + " not writable yet"
		}
		return ""
	})
	s.mu.Lock()
	lastOld := s.lastWrite[old.name]
	firstNew := s.firstWrite[next.name]
	double := append([]string(nil), s.double...)
	rounds := s.rounds
	s.mu.Unlock()
	t.Logf("cut at 0; old leader's last write %+.2fs; lease expired %+.2fs; new leader %s first write %+.2fs; %d sampler rounds",
		lastOld.Sub(cut).Seconds(), expired.Sub(cut).Seconds(), next.name, firstNew.Sub(cut).Seconds(), rounds)
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
	old.proxy.Restore()
	tc.waitHealthy(2*time.Minute, "node1", "node2", "node3")
	if v := tc.view(); v.Leader != next.name {
		t.Fatalf("leader %s after healing, want %s", v.Leader, next.name)
	}

	// A switchover back to the healed node: requested through the failover
	// key, done within seconds, and the sampler still never sees two
	// writable primaries.
	asked := time.Now()
	if err := leader.RequestFailover(context.Background(), cli, "/service/", "e2e", cluster.Failover{Leader: next.name, Member: old.name}); err != nil {
		t.Fatal(err)
	}
	tc.waitFor(30*time.Second, "switchover to "+old.name, func() string {
		v, err := leader.ReadView(context.Background(), cli, "/service/", "e2e")
		if err != nil || v.Leader != old.name || v.Failover != nil {
			return fmt.Sprintf("leader %q, failover key %+v", v.Leader, v.Failover)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if w, ok := s.lastWrite[old.name]; !ok || w.Before(asked) {
			return old.name + " not writable yet"
		}
		return ""
	})
	t.Logf("switchover %s -> %s: %s writable %.1fs after the request", next.name, old.name, old.name, time.Since(asked).Seconds())
	tc.waitHealthy(time.Minute, "node1", "node2", "node3")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.double) > 0 {
		t.Fatalf("two writable primaries seen: %v", s.double)
	}
}
