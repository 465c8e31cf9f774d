package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/leader"
)

// ctlNoScope runs pghactl with etcd but no --scope: the cluster comes
// from patronictl's positional name.
func (tc *testCluster) ctlNoScope(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.Reader = strings.NewReader(stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := app.RunContext(ctx, append([]string{"pghactl", "-d", "etcd3://" + strings.TrimPrefix(tc.endpoint, "http://")}, args...))
	return out.String(), err
}

// TestPatronictlPositionalCluster: every command takes patronictl's
// cluster name first; a name other than the configured scope is refused
// before anything is done.
func TestPatronictlPositionalCluster(t *testing.T) {
	tc := newTestCluster(t)
	tc.apis["node2"].answer("POST /restart", 200, "restarted successfully")
	tc.apis["node2"].answer("POST /reload", 202, "reload scheduled")
	tc.apis["node3"].answer("POST /reload", 202, "reload scheduled")
	tc.apis["node2"].answer("POST /reinitialize", 200, "reinitialize started")
	ok := []struct {
		args []string
		want string
	}{
		{[]string{"restart", "demo", "node2", "--force"}, "Success: restart on member node2"},
		{[]string{"reload", "demo", "node2", "node3", "--force"}, "Reload request received for member node3"},
		{[]string{"reinit", "demo", "node2", "--force"}, "Success: reinitialize for member node2"},
		{[]string{"flush", "demo", "switchover", "--force"}, "No pending scheduled switchover"},
		{[]string{"flush", "demo", "node2", "restart"}, "No scheduled restarts"},
		{[]string{"dsn", "demo"}, "host=127.0.0.1 port=15431"},
		{[]string{"dsn", "demo", "-m", "node2"}, "host=127.0.0.1 port=15432"},
		{[]string{"list", "demo"}, "| node3  | 127.0.0.1:15433 |"},
		{[]string{"topology", "demo"}, "| + node2 "},
		{[]string{"history", "demo"}, "no recovery target specified"},
		{[]string{"show-config", "demo"}, "max_connections: 100"},
	}
	for _, tt := range ok {
		out, err := tc.ctl(t, "", tt.args...)
		if err != nil || !strings.Contains(out, tt.want) {
			t.Errorf("pghactl %s: %v\n%s", strings.Join(tt.args, " "), err, out)
		}
	}
	if got := tc.apis["node2"].requests(); len(got) != 3 {
		t.Errorf("node2 API got %v, want restart, reload, reinitialize", got)
	}
	// Without --scope the positional name is the cluster, as in patronictl.
	if out, err := tc.ctlNoScope(t, "", "list", "demo"); err != nil || !strings.Contains(out, "Cluster: demo") {
		t.Errorf("list demo without --scope: %v\n%s", err, out)
	}
	if _, err := tc.ctlNoScope(t, "", "list"); err == nil || !strings.Contains(err.Error(), "no cluster named") {
		t.Errorf("list without any cluster name: %v", err)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"list", "prod"}, `cluster "prod" is not the configured cluster "demo"`},
		{[]string{"switchover", "prod", "--force"}, `cluster "prod" is not the configured cluster "demo"`},
		{[]string{"pause", "prod"}, `cluster "prod" is not the configured cluster "demo"`},
		{[]string{"restart", "prod", "node2", "--force"}, `"prod" is neither the configured cluster "demo"`},
		{[]string{"reinit", "prod", "node2", "--force"}, `"prod" is neither the configured cluster "demo"`},
		{[]string{"flush", "prod", "switchover"}, `"prod" is neither the configured cluster "demo"`},
		{[]string{"list", "demo", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range bad {
		if out, err := tc.ctl(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("pghactl %s: err %v, want %q\n%s", strings.Join(tt.args, " "), err, tt.want, out)
		}
	}
	if got := tc.apis["node2"].requests(); len(got) != 3 {
		t.Errorf("a refused command reached node2's API: %v", got)
	}
}

func TestListExtendedAndTimestamp(t *testing.T) {
	tc := newTestCluster(t)
	out, err := tc.ctl(t, "", "list", "-e", "-t")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if _, err := time.ParseInLocation("2006-01-02 15:04:05", lines[0], time.Local); err != nil {
		t.Errorf("list -t first line %q is not a timestamp", lines[0])
	}
	if !strings.Contains(out, "| Member | Host            | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason | Scheduled restart | Tags             |") {
		t.Errorf("list -e header:\n%s", out)
	}
	out, err = tc.ctl(t, "", "list", "--extended", "-f", "tsv")
	if err != nil || !strings.HasPrefix(out, "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag\tPending restart\tPending restart reason\tScheduled restart\tTags\n") {
		t.Errorf("list --extended -f tsv: %v\n%s", err, out)
	}
	if _, err := tc.ctl(t, "", "list", "-w", "abc"); err == nil || !strings.Contains(err.Error(), "positive number of seconds") {
		t.Errorf("list -w abc: %v", err)
	}
}

func TestListWatchSeconds(t *testing.T) {
	tc := newTestCluster(t)
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	ctx, cancel := context.WithTimeout(context.Background(), 1700*time.Millisecond)
	defer cancel()
	if err := app.RunContext(ctx, []string{"pghactl", "-d", tc.endpoint, "--scope", "demo", "list", "-w", "0.5"}); err != nil {
		t.Fatalf("list -w 0.5: %v", err)
	}
	if n := strings.Count(out.String(), "+ Cluster: demo"); n < 3 {
		t.Errorf("list -w 0.5 printed %d tables in 1.7 s, want at least 3", n)
	}
}

func TestVersion(t *testing.T) {
	tc := newTestCluster(t)
	tc.apis["node1"].answer("GET /patroni", 200, `{"patroni":{"version":"0.1.0","scope":"demo","name":"node1"},"server_version":150004}`)
	tc.apis["node2"].answer("GET /patroni", 200, `{"patroni":{"version":"0.1.0"},"server_version":90624}`)
	out, err := tc.ctl(t, "", "version")
	if err != nil || out != "pghactl version 0.1.0\n" {
		t.Errorf("version = %q %v", out, err)
	}
	out, err = tc.ctl(t, "", "version", "demo")
	if err != nil || !strings.Contains(out, "node1: pgha 0.1.0 PostgreSQL 15.4\n") || !strings.Contains(out, "node2: pgha 0.1.0 PostgreSQL 9.6.24\n") ||
		!strings.Contains(out, "node3: failed to get version: status code 404") {
		t.Errorf("version demo = %v\n%s", err, out)
	}
	out, _ = tc.ctl(t, "", "version", "demo", "node1")
	if strings.Contains(out, "node2") {
		t.Errorf("version demo node1 asked node2:\n%s", out)
	}
}

func TestRemove(t *testing.T) {
	tc := newTestCluster(t)
	count := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := tc.cli.Get(ctx, leader.Prefix("/service/", "demo"), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return r.Count
	}
	before := count()
	for _, tt := range []struct{ stdin, want string }{
		{"prod\n", "cluster names specified do not match"},
		{"demo\nyes\n", `you did not exactly type "Yes I am aware"`},
		{"demo\nYes I am aware\nnode2\n", "you did not specify the current leader"},
		{"demo\n", "no answer on stdin"},
	} {
		if _, err := tc.ctl(t, tt.stdin, "remove", "demo"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("remove with %q: %v, want %q", tt.stdin, err, tt.want)
		}
	}
	if n := count(); n != before {
		t.Fatalf("a refused remove deleted keys: %d -> %d", before, n)
	}
	out, err := tc.ctl(t, "demo\nYes I am aware\nnode1\n", "remove", "demo")
	if err != nil || !strings.Contains(out, "Please specify the leader name to continue: ") || !strings.Contains(out, "Removed") {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	if n := count(); n != 0 {
		t.Errorf("%d keys left after remove", n)
	}
}
