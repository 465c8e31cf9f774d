package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/replication"
)

// fixedView is an HA loop that has published one view.
type fixedView struct{ v cluster.View }

func (f fixedView) View() (cluster.View, bool) { return f.v, true }
func (f fixedView) Changed() <-chan struct{}   { return nil }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFollowParametersUnseenView reproduces the order in which the HA
// loop hands views out: OnView gave the instance the cluster's
// parameters of its first etcd read (none yet), then the cycle re-read
// etcd after acting and published that later view, whose parameters the
// instance never received. followParameters must apply the published
// view's parameters itself, with the configuration check that drops a
// setting Postgres rejects.
func TestFollowParametersUnseenView(t *testing.T) {
	n := pgtest.NewPrimary(t)
	// The daemon's instance of that server, with a log the test reads.
	var logs syncBuf
	inst, err := replication.New(n.Config, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	inst.SetClusterParameters(nil) // OnView, first read
	v := cluster.View{Config: config.DefaultDynamic(), ConfigRevision: 2}
	v.Config.PostgreSQL.Parameters = map[string]any{"work_mem": "8MB", "no_such_setting": 1.0}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- followParameters(ctx, fixedView{v}, inst, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c := n.Conn(t)
	var got string
	_ = testkit.Poll(context.Background(), 30*time.Second, func() error {
		qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer qcancel()
		if err := c.QueryRow(qctx, "SHOW work_mem").Scan(&got); err != nil {
			t.Fatal(err)
		}
		return testkit.Missing(got == "8MB", "work_mem "+got)
	})
	if got != "8MB" {
		t.Fatalf("work_mem = %s 30s after the view was published, want 8MB; log:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "ignoring cluster parameters that Postgres rejects") || !strings.Contains(logs.String(), "parameters=no_such_setting") {
		t.Fatalf("no warning about the rejected setting; log:\n%s", logs.String())
	}
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postgresql.pgha.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "no_such_setting") {
		t.Fatalf("the rejected setting was written:\n%s", b)
	}
}
