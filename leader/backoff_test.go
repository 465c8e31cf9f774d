package leader

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
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
// initdb always fails.
type failingBootstrap struct {
	noPostgres
	attempts atomic.Int32
}

func (p *failingBootstrap) Bootstrap(context.Context) error {
	p.attempts.Add(1)
	return errors.New("initdb: could not create directory: permission denied")
}

// TestFailingActionBacksOff: a bootstrap that keeps failing (each failure
// deletes the initialize key, a watch event that wakes the loop) is tried
// a handful of times in seconds, not thousands.
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
	deadline := time.Now().Add(30 * time.Second)
	for pg.attempts.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	first := time.Now()
	for time.Since(first) < 3500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	// 1 s then 2 s of backoff: tries at about 0, 1 and 3 s.
	if n := pg.attempts.Load(); n < 2 || n > 4 {
		t.Fatalf("%d bootstrap attempts in 3.5 s with loop_wait 1s: want 2 to 4", n)
	}
}
