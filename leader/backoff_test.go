package leader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		count int
		want  time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {50, 10 * time.Second}} {
		if got := backoff(time.Second, tt.count); got != tt.want {
			t.Errorf("backoff(1s, %d) = %s, want %s", tt.count, got, tt.want)
		}
	}
}

func TestFailuresRecord(t *testing.T) {
	now := time.Unix(1000, 0)
	var f failures
	boot := Action{Kind: Bootstrap}
	boom := errors.New("initdb: no space left on device")
	if log, _ := f.record(boot, boom, now, time.Second); !log {
		t.Fatal("the first failure is not logged")
	}
	if !f.holds(boot, now.Add(500*time.Millisecond)) || f.holds(boot, now.Add(1100*time.Millisecond)) {
		t.Fatal("the first failure must hold the action back for loop_wait, and no longer")
	}
	if f.holds(Action{Kind: Fence}, now) || f.holds(Action{Kind: Clone}, now) {
		t.Fatal("a backoff holds back another action (fencing above all)")
	}
	for i := 1; i <= 5; i++ {
		if log, _ := f.record(boot, boom, now.Add(time.Duration(i)*time.Second), time.Second); log {
			t.Fatalf("identical failure %d logged again within %s", i+1, failLogEvery)
		}
	}
	log, repeats := f.record(boot, boom, now.Add(failLogEvery+time.Second), time.Second)
	if !log || repeats != 5 {
		t.Fatalf("after %s: logged %v with %d repeats, want true with 5", failLogEvery, log, repeats)
	}
	if log, _ := f.record(boot, errors.New("another error"), now.Add(failLogEvery+2*time.Second), time.Second); !log {
		t.Fatal("a different error is not logged")
	}
	f.record(boot, nil, now.Add(time.Minute), time.Second)
	if f.holds(boot, now.Add(time.Minute)) || f.count != 0 {
		t.Fatal("a success does not clear the failure")
	}
}

// failingBootstrap is a Postgres whose data directory is empty and whose
// initdb always fails; it records when each attempt came.
type failingBootstrap struct {
	noPostgres
	mu       sync.Mutex
	attempts []time.Time
}

func (p *failingBootstrap) Bootstrap(context.Context) error {
	p.mu.Lock()
	p.attempts = append(p.attempts, time.Now())
	p.mu.Unlock()
	return errors.New("initdb: could not create directory: permission denied")
}

func (p *failingBootstrap) tries() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.attempts)
}

// TestFailingActionBacksOff: a bootstrap that keeps failing (each failure
// deletes the initialize key, a watch event that wakes the loop) is tried
// again only after its backoff, on a real etcd: loop_wait (1 s) after the
// first failure, twice that after the second; not at every wake-up.
func TestFailingActionBacksOff(t *testing.T) {
	endpoints := pgtest.StartEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pg := &failingBootstrap{}
	dcs := config.DefaultDynamic()
	l := NewLoop(NewStore(cli, "/service/", "backoff", "n1", nil), pg, Options{Name: "n1", ConnURL: "postgres://127.0.0.1:5432/postgres", Bootstrap: dcs, Log: pgtest.Logger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	testkit.Eventually(t, 30*time.Second, "three bootstrap attempts", func() error {
		return testkit.Missing(len(pg.tries()) >= 3, fmt.Sprintf("%d attempts", len(pg.tries())))
	})
	cancel()
	<-done
	// The clock is read inside Bootstrap, after the decision: allow a
	// little for the time between the two.
	const slack = 100 * time.Millisecond
	at := pg.tries()
	if d := at[1].Sub(at[0]); d < dcs.LoopWait.D()-slack {
		t.Fatalf("second attempt %s after the first: want the loop_wait backoff (%s)", d, dcs.LoopWait.D())
	}
	if d := at[2].Sub(at[1]); d < 2*dcs.LoopWait.D()-slack {
		t.Fatalf("third attempt %s after the second: want twice loop_wait (%s)", d, 2*dcs.LoopWait.D())
	}
}
