package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

// TestComposeStack runs the compose stack through the failures an operator
// meets, under two writers (one through HAProxy's port 5000, one through a
// replica's pooler port), and measures how long writes stop:
//
//  1. docker kill of the leader's container: writes through HAProxy resume
//     within ttl + 10 s, and (synchronous_mode) every acknowledged write is
//     on the new primary;
//  2. docker start of it: it rejoins as a streaming replica (pghactl list);
//  3. pghactl switchover inside a container: the pooler writer sees no
//     error;
//  4. docker stop of the etcd leader's container: the cluster keeps its
//     primary for ttl + 5 s and both writers keep writing;
//  5. every acknowledged write is on the final primary, and
//     docker-compose down -v leaves no container, volume or network.
func TestComposeStack(t *testing.T) {
	if os.Getenv("PGHA_COMPOSE_TEST") != "1" {
		t.Skip("the docker-compose stack test runs under make compose-test (scripts/compose-test.sh)")
	}
	if out, err := run("docker", "info"); err != nil {
		t.Fatalf("PGHA_COMPOSE_TEST=1 but no Docker engine: %v\n%s", err, out)
	}
	password := os.Getenv("POSTGRES_PASSWORD")
	if password == "" {
		password = defaultPassword
	}
	ttl := composeTTL(t)
	s := newStack(t)
	var report []string
	note := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		report = append(report, line)
		t.Log(line)
	}
	defer func() {
		t.Logf("summary (project %s):\n  %s", s.project, strings.Join(report, "\n  "))
	}()

	began := time.Now()
	s.mustCompose("up", "-d", "--no-build")
	note("docker-compose up -d returned after %s", since(began))
	primary := s.hostPort("haproxy", 5000)
	s.waitFor(4*time.Minute, "a write through HAProxy's port 5000", func() string {
		return createTable(primary, password)
	})
	note("HAProxy's port 5000 took writes %s after up", since(began))
	var st clusterState
	s.waitFor(2*time.Minute, "a leader, two streaming replicas, one of them synchronous", func() string {
		var err error
		if st, err = s.state("pgha1"); err != nil {
			return err.Error()
		}
		if st.leader == "" || len(st.streamed) != 2 || st.sync == "" || !st.streamed[st.sync] {
			return st.String()
		}
		return ""
	})
	note("cluster healthy %s after up: %s", since(began), st)

	// The pooler writer's node is the replica that is not synchronous: it
	// stays a replica when the leader is killed.
	old := st.leader
	var via string
	for _, m := range st.members {
		if m.Member != old && m.Member != st.sync {
			via = m.Member
		}
	}
	hw := newWriter("haproxy", primary, password)
	pw := newWriter("pooler-"+via, s.hostPort(via, 6432), password)
	writers := []*writer{hw, pw}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	stopWriters := func() { stop(); wg.Wait() }
	defer stopWriters()
	s.waitFor(30*time.Second, "acknowledged writes from both writers", func() string {
		return ackedAfter(writers, began, 20)
	})

	// 1. kill -9 of the leader's container.
	// Measured from when docker kill returns: the container is dead then
	// (the command itself takes a moment, while writes still succeed).
	if out, err := run("docker", "kill", s.container(old)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	killAt := time.Now()
	s.waitFor(ttl+60*time.Second, "writes through HAProxy after the kill", func() string {
		return ackedAfter([]*writer{hw}, killAt, 1)
	})
	haproxyBack := since(killAt)
	s.waitFor(60*time.Second, "writes through "+via+"'s pooler after the kill", func() string {
		return ackedAfter([]*writer{pw}, killAt, 1)
	})
	s.waitFor(60*time.Second, "a new leader", func() string {
		var err error
		if st, err = s.state(via); err != nil {
			return err.Error()
		}
		if st.leader == "" || st.leader == old {
			return st.String()
		}
		return ""
	})
	now := time.Now()
	hg, pg := hw.longestGap(killAt, now), pw.longestGap(killAt, now)
	note("docker kill %s (leader): new leader %s; writes through HAProxy back after %s (longest gap %s, %d errors), through %s's pooler longest gap %s (%d errors)",
		old, st.leader, haproxyBack, round(hg), len(hw.errorsBetween(killAt, now)), via, round(pg), len(pw.errorsBetween(killAt, now)))
	if hg > ttl+10*time.Second {
		t.Errorf("writes through HAProxy stopped for %s after the leader's container was killed: want at most ttl (%s) + 10s", round(hg), ttl)
	}
	n := checkAcked(t, s, st.leader, password, writers)
	note("no acknowledged write lost: all %d on the new primary %s", n, st.leader)

	// 2. The killed node starts again and rejoins as a replica.
	startAt := time.Now()
	if out, err := run("docker", "start", s.container(old)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s.waitFor(3*time.Minute, old+" streaming from the new leader", func() string {
		var err error
		if st, err = s.state(via); err != nil {
			return err.Error()
		}
		if !st.streamed[old] || st.leader == "" || st.leader == old {
			return st.String()
		}
		return ""
	})
	note("docker start %s: a streaming replica again after %s: %s", old, since(startAt), st)

	// 3. A switchover from inside a container, to the synchronous standby.
	s.waitFor(60*time.Second, "a streaming synchronous standby", func() string {
		var err error
		if st, err = s.state(via); err != nil {
			return err.Error()
		}
		if st.leader == "" || st.sync == "" || !st.streamed[st.sync] {
			return st.String()
		}
		return ""
	})
	from, to := st.leader, st.sync
	swAt := time.Now()
	out, err := s.exec(from, nil, "pghactl", "switchover", "--leader", from, "--candidate", to, "--force")
	if err != nil {
		t.Fatalf("pghactl switchover in %s's container: %v\n%s", from, err, out)
	}
	s.waitFor(60*time.Second, to+" leading and "+from+" streaming from it", func() string {
		var err error
		if st, err = s.state(via); err != nil {
			return err.Error()
		}
		if st.leader != to || !st.streamed[from] {
			return st.String()
		}
		return ""
	})
	swDone := time.Now()
	s.waitFor(30*time.Second, "writes from both writers after the switchover", func() string {
		return ackedAfter(writers, swDone, 1)
	})
	now = time.Now()
	perrs := pw.errorsBetween(swAt, now)
	note("pghactl switchover %s -> %s: done in %s; longest gap through HAProxy %s (%d errors), through %s's pooler %s (%d errors)",
		from, to, round(swDone.Sub(swAt)), round(hw.longestGap(swAt, now)), len(hw.errorsBetween(swAt, now)), via, round(pw.longestGap(swAt, now)), len(perrs))
	for _, e := range perrs {
		t.Errorf("writer %s across the switchover: %s", pw.name, e.msg)
	}

	// 4. The etcd leader's container stops: the cluster keeps its primary.
	etcdLeader, err := s.etcdLeader()
	if err != nil {
		t.Fatal(err)
	}
	before := st
	etcdAt := time.Now()
	if out, err := run("docker", "stop", "-t", "30", s.container(etcdLeader)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	hold := ttl + 5*time.Second
	for end := etcdAt.Add(hold); time.Now().Before(end); {
		// An observation window, not a synchroniser: the leader must not
		// change at any point of it.
		if cur, err := s.state(via); err == nil && cur.leader != "" && cur.leader != before.leader {
			t.Fatalf("with %s stopped, the leader changed from %s to %s", etcdLeader, before.leader, cur.leader)
		}
		time.Sleep(time.Second)
	}
	s.waitFor(30*time.Second, "the leader's view with "+etcdLeader+" stopped", func() string {
		var err error
		if st, err = s.state(via); err != nil {
			return err.Error()
		}
		if st.leader == "" {
			return st.String()
		}
		return ""
	})
	now = time.Now()
	if st.leader != before.leader || st.timeline != before.timeline {
		t.Errorf("with %s stopped: leader %s TL%d, want %s TL%d", etcdLeader, st.leader, st.timeline, before.leader, before.timeline)
	}
	if msg := ackedAfter(writers, now.Add(-3*time.Second), 1); msg != "" {
		t.Errorf("with %s stopped, writes did not continue: %s", etcdLeader, msg)
	}
	note("docker stop %s (etcd leader): leader %s kept over %s; longest gap through HAProxy %s (%d errors), through %s's pooler %s (%d errors)",
		etcdLeader, st.leader, hold, round(hw.longestGap(etcdAt, now)), len(hw.errorsBetween(etcdAt, now)), via, round(pw.longestGap(etcdAt, now)), len(pw.errorsBetween(etcdAt, now)))
	for _, w := range writers {
		for _, e := range w.errorsBetween(etcdAt, now) {
			t.Errorf("writer %s with %s stopped: %s", w.name, etcdLeader, e.msg)
		}
	}

	// 5. Every acknowledged write on the final primary; nothing left.
	stopWriters()
	n = checkAcked(t, s, st.leader, password, writers)
	note("all %d acknowledged writes (%d through HAProxy, %d through %s's pooler) on the final primary %s",
		n, len(hw.ackedIDs()), len(pw.ackedIDs()), via, st.leader)
	downTook := s.tearDown()
	note("docker-compose down -v took %s; no container, volume or network of the project left", round(downTook))
	note("whole run: %s", since(began))
}

// composeTTL is bootstrap.dcs.ttl of docker/pgha/node.yml.
func composeTTL(t *testing.T) time.Duration {
	data, err := os.ReadFile(filepath.Join("..", "..", "docker", "pgha", "node.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Bootstrap struct {
			DCS struct {
				TTL string `yaml:"ttl"`
			} `yaml:"dcs"`
		} `yaml:"bootstrap"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("docker/pgha/node.yml: %v", err)
	}
	if d, err := time.ParseDuration(f.Bootstrap.DCS.TTL); err == nil {
		return d
	}
	if n, err := strconv.Atoi(f.Bootstrap.DCS.TTL); err == nil {
		return time.Duration(n) * time.Second
	}
	t.Fatalf("docker/pgha/node.yml: bootstrap.dcs.ttl %q is not a duration", f.Bootstrap.DCS.TTL)
	return 0
}

// createTable creates the writers' table through addr; "" on success.
func createTable(addr, password string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, newWriter("", addr, password).dsn)
	if err != nil {
		return err.Error()
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS compose_writes (via text, id bigint, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (via, id))"); err != nil {
		return err.Error()
	}
	return ""
}

// ackedAfter is "" when every writer has at least n acknowledgements
// after t, else which has not.
func ackedAfter(ws []*writer, t time.Time, n int) string {
	for _, w := range ws {
		if k := w.ackedSince(t); k < n {
			return fmt.Sprintf("%s: %d acknowledged writes since %s", w.name, k, t.Format("15:04:05.000"))
		}
	}
	return ""
}

// checkAcked checks that every write acknowledged so far is on node's
// Postgres, read there directly, and that node is a primary; it returns
// how many were checked.
func checkAcked(t *testing.T, s *stack, node, password string, ws []*writer) int {
	t.Helper()
	want := map[string][]int64{}
	for _, w := range ws {
		want[w.name] = w.ackedIDs()
	}
	out, err := s.psql(node, password, "SELECT 'recovery', pg_is_in_recovery()::text UNION ALL SELECT via, id::text FROM compose_writes")
	if err != nil {
		t.Fatalf("read the writes on %s: %v", node, err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		have[line] = true
	}
	if !have["recovery|false"] {
		t.Fatalf("%s is not a primary (pg_is_in_recovery is not false)", node)
	}
	n, lost := 0, 0
	for via, ids := range want {
		for _, id := range ids {
			n++
			if !have[fmt.Sprintf("%s|%d", via, id)] {
				lost++
				if lost <= 10 {
					t.Errorf("acknowledged write %s/%d is missing on %s", via, id, node)
				}
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes are missing on %s", lost, n, node)
	}
	return n
}

func since(t time.Time) time.Duration { return round(time.Since(t)) }

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
