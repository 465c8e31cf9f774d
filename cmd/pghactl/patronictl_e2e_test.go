package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestPatronictlAgainstPgha runs Patroni's own patronictl (Debian's
// patroni package) against a three-node pgha cluster on real Postgres and
// etcd: patronictl reads the cluster from etcd in Patroni's key layout and
// JSON, and drives it through the members' REST APIs (basic auth) exactly
// as it drives Patroni. Every command an operator uses must work: list,
// topology, history, show-config, edit-config, restart, reload, pause
// --wait, resume --wait, switchover, failover, version, dsn, query.
func TestPatronictlAgainstPgha(t *testing.T) {
	bin, err := exec.LookPath("patronictl")
	if err != nil {
		t.Skip("patronictl is not installed (Debian package patroni; scripts/install-deps.sh installs it)")
	}
	pgtest.RequireUser(t)
	auth := config.BasicAuth{Username: "admin", Password: "s3cret"}
	tc := daemontest.New(t, 3, daemontest.Options{Edit: func(_ int, c *config.Config) {
		c.Pooler.Enabled = false
		c.RESTAPI.Authentication = auth
	}})
	// Each daemon gets its config as a file, as pgha run does, so that
	// POST /reload (patronictl reload) has something to re-read.
	dir := t.TempDir()
	files := map[string]string{}
	writeConfig := func(n *daemontest.Node) {
		t.Helper()
		b, err := yaml.Marshal(n.Config)
		if err != nil {
			t.Fatal(err)
		}
		files[n.Name] = filepath.Join(dir, n.Name+".yml")
		if err := os.WriteFile(files[n.Name], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(n *daemontest.Node) {
		writeConfig(n)
		n.Start(func(d *daemon.Daemon) error { return d.AddComponents(files[n.Name]) })
	}
	start(tc.Nodes[0])
	tc.WaitHealthy(2*time.Minute, "node1")
	start(tc.Nodes[1])
	start(tc.Nodes[2])
	tc.WaitHealthy(3 * time.Minute)

	var hosts []string
	for _, e := range tc.Endpoints {
		u, err := url.Parse(e)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, u.Host)
	}
	cfgPath := filepath.Join(t.TempDir(), "patronictl.yml")
	cfg := fmt.Sprintf("scope: %s\nnamespace: /service/\netcd3:\n  hosts: %s\nrestapi:\n  authentication:\n    username: %s\n    password: %s\n",
		daemontest.Scope, strings.Join(hosts, ","), auth.Username, auth.Password)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	patronictl := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-c", cfgPath}, args...)...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.SuperPassword, "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("patronictl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("patronictl %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	expect := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	// leaderIs is met when name leads and every other member streams;
	// what is missing names the member, with the tail of its Postgres log.
	leaderIs := func(name string) func() string {
		return func() string {
			v := tc.View()
			if v.Leader != name {
				return "leader is " + v.Leader
			}
			for _, m := range v.Members {
				if m.Name != name && m.State != cluster.StateStreaming {
					tail := ""
					if n := tc.ByName(m.Name); n.D != nil {
						tail = n.D.Instance().LogTail(15)
					}
					return fmt.Sprintf("%s is %s; its Postgres log ends:\n%s", m.Name, m.State, tail)
				}
			}
			// Member keys are written once per HA cycle: ask the leader's
			// Postgres too, so that the next step starts with every
			// replica connected (a restart of the primary breaks
			// replication for up to wal_retrieve_retry_interval).
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if n := tc.ByName(name).Value(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"); n != fmt.Sprint(len(v.Members)-1) {
				return name + "'s pg_stat_replication has " + n + " streaming replicas"
			}
			return ""
		}
	}
	scope := daemontest.Scope

	out := patronictl("list")
	expect(out, "Cluster: "+scope, "| node1 ", "Leader", "| node2 ", "| node3 ", "streaming")
	if strings.Contains(out, "unknown") {
		t.Errorf("list shows an unknown value:\n%s", out)
	}
	expect(patronictl("list", "-e", scope), "Pending restart")
	if out := patronictl("list", "-e", scope); strings.Contains(out, "{}") {
		t.Errorf("list -e shows empty tags as {}:\n%s", out)
	}
	expect(patronictl("topology"), "| + node2")
	expect(patronictl("history"), "| TL |")
	expect(patronictl("show-config"), "ttl: 6", "loop_wait: 1")
	expect(patronictl("version", scope), "node1: Patroni", "PostgreSQL 15")
	expect(patronictl("dsn"), "host=127.0.0.1 port=")
	expect(patronictl("query", scope, "-U", pgtest.SuperUser, "-c", "SELECT pg_is_in_recovery()"), "False")

	out = patronictl("edit-config", scope, "--force", "-s", "loop_wait=2", "-p", "work_mem=8MB")
	expect(out, "+loop_wait: 2", "Configuration changed")
	tc.WaitFor(30*time.Second, "the config key has the edit", func() string {
		v := tc.View()
		if v.Config.LoopWait.D() != 2*time.Second || fmt.Sprint(v.Config.PostgreSQL.Parameters["work_mem"]) != "8MB" {
			return fmt.Sprintf("loop_wait %s, work_mem %v", v.Config.LoopWait.D(), v.Config.PostgreSQL.Parameters["work_mem"])
		}
		return ""
	})
	tc.WaitFor(30*time.Second, "work_mem reaches node2", func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s := tc.ByName("node2").Value(ctx, "SHOW work_mem"); s != "8MB" {
			return "work_mem " + s
		}
		return ""
	})

	expect(patronictl("reload", scope, "--force"), "Reload request received for member node1", "node3")
	// A reload re-reads the node's file: a tag set there reaches the
	// member key, and patronictl list shows it.
	n3 := tc.ByName("node3")
	n3.Config.Tags.NoLoadBalance = true
	writeConfig(n3)
	expect(patronictl("reload", scope, "node3", "--force"), "Reload request received for member node3")
	tc.WaitFor(30*time.Second, "node3's member key has the tag", func() string {
		if m, _ := tc.View().Member("node3"); !m.Tags.NoLoadBalance {
			return "no noloadbalance tag"
		}
		return ""
	})
	expect(patronictl("list", "-e"), "noloadbalance: true")
	expect(patronictl("restart", scope, "node2", "--force"), "Success: restart on member node2")
	tc.WaitFor(time.Minute, "node2 streams again", leaderIs("node1"))
	expect(patronictl("restart", scope, "node1", "--force"), "Success: restart on member node1")
	tc.WaitFor(time.Minute, "node1 leads again after its restart", leaderIs("node1"))

	out = patronictl("pause", "--wait")
	expect(out, "Success: cluster management is paused")
	if strings.Contains(out, "didn't recognized") {
		t.Errorf("pause --wait: a member did not report the pause:\n%s", out)
	}
	if !tc.View().Config.Pause {
		t.Error("the config key is not paused")
	}
	expect(patronictl("list"), "Maintenance mode: on")
	out = patronictl("resume", "--wait")
	expect(out, "Success: cluster management is resumed")
	if strings.Contains(out, "didn't recognized") {
		t.Errorf("resume --wait: a member did not report the resume:\n%s", out)
	}

	expect(patronictl("switchover", scope, "--leader", "node1", "--candidate", "node2", "--force"), `Successfully switched over to "node2"`)
	tc.WaitFor(time.Minute, "node2 leads and the others stream from it", leaderIs("node2"))
	expect(patronictl("failover", scope, "--candidate", "node3", "--force"), `over to "node3"`)
	tc.WaitFor(time.Minute, "node3 leads and the others stream from it", leaderIs("node3"))
	out = patronictl("history")
	expect(out, "node2", "node3")
	expect(patronictl("list"), "| node3  | 127.0.0.1")
}
