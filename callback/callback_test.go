package callback

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testkit"
)

func TestSplit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "/usr/local/bin/cb.sh", want: []string{"/usr/local/bin/cb.sh"}},
		{in: "  /bin/cb  --flag 'two words'  ", want: []string{"/bin/cb", "--flag", "two words"}},
		{in: `/bin/cb "a \"b\" \$c" back\ slash ''`, want: []string{"/bin/cb", `a "b" $c`, "back slash", ""}},
		{in: `/bin/cb 'open`, err: true},
		{in: `/bin/cb \`, err: true},
	} {
		got, err := Split(tt.in)
		if tt.err != (err != nil) || (!tt.err && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("Split(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, cfg config.Callbacks) (*Runner, *testkit.Buffer) {
	t.Helper()
	var logs testkit.Buffer
	r := New(cfg, "demo", slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, &logs
}

// TestRunnerArguments: scripts get Patroni's arguments (action, role,
// scope), in the order the events happened.
func TestRunnerArguments(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	cb := script(t, dir, "cb.sh", `echo "$@" >> `+out)
	r, _ := start(t, config.Callbacks{OnStart: cb, OnRoleChange: cb + " --extra"})
	r.Fire(Event{Action: OnStart, Role: "replica"})
	r.Fire(Event{Action: OnStop, Role: "replica"}) // no script: ignored
	testkit.Eventually(t, 10*time.Second, "on_start ran", func() error {
		b, _ := os.ReadFile(out)
		return testkit.Missing(strings.Count(string(b), "\n") == 1, "calls: "+string(b))
	})
	r.Fire(Event{Action: OnRoleChange, Role: "primary"})
	testkit.Eventually(t, 10*time.Second, "on_role_change ran", func() error {
		b, _ := os.ReadFile(out)
		return testkit.Missing(strings.Count(string(b), "\n") == 2, "calls: "+string(b))
	})
	b, _ := os.ReadFile(out)
	if want := "on_start replica demo\n--extra on_role_change primary demo\n"; string(b) != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", b, want)
	}
}

// TestRunnerTimeoutAndFailure: a script past its timeout is killed, one
// that fails is logged with its output; neither stops the runner.
func TestRunnerTimeoutAndFailure(t *testing.T) {
	dir := t.TempDir()
	slow := script(t, dir, "slow.sh", "sleep 30")
	bad := script(t, dir, "bad.sh", "echo 'no route to pgbouncer' >&2; exit 3")
	r, logs := start(t, config.Callbacks{OnStart: slow, OnStop: bad, Timeout: config.Duration(200 * time.Millisecond)})
	began := time.Now()
	r.Fire(Event{Action: OnStart, Role: "primary"})
	testkit.Eventually(t, 10*time.Second, "the slow script killed", func() error {
		return testkit.Missing(strings.Contains(logs.String(), "killed after its timeout"), "log: "+logs.String())
	})
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("the slow script ran %s with a 200ms timeout", d)
	}
	r.Fire(Event{Action: OnStop, Role: "primary"})
	testkit.Eventually(t, 10*time.Second, "the failure logged", func() error {
		return testkit.Missing(strings.Contains(logs.String(), "no route to pgbouncer"), "log: "+logs.String())
	})
}

// TestRunnerSupersedes: a new event kills the script still running for
// the previous one (Patroni's behaviour), and its own script runs.
func TestRunnerSupersedes(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	slow := script(t, dir, "slow.sh", "sleep 30; echo slow >> "+out)
	fast := script(t, dir, "fast.sh", `echo "$1" >> `+out)
	r, logs := start(t, config.Callbacks{OnStart: slow, OnRoleChange: fast})
	r.Fire(Event{Action: OnStart, Role: "replica"})
	// Whether or not the slow script has started yet, the next event ends it.
	r.Fire(Event{Action: OnRoleChange, Role: "primary"})
	testkit.Eventually(t, 10*time.Second, "on_role_change ran", func() error {
		b, _ := os.ReadFile(out)
		return testkit.Missing(string(b) == "on_role_change\n", "calls: "+string(b))
	})
	if !strings.Contains(logs.String(), "superseded") {
		t.Fatalf("no superseded line:\n%s", logs.String())
	}
}
