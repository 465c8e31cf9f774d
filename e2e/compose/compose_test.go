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
//  3. docker stop of the new leader's container: it hands over to the
//     synchronous standby (no acknowledged write lost), then starts again;
//  4. pghactl switchover inside a container: writers through the poolers
//     of the candidate and of the third node see no error (through the
//     old leader's own pooler: at most its one statement in flight);
//  5. docker stop of the etcd leader's container: the cluster keeps its
//     primary for ttl + 5 s and both writers keep writing without error;
//  6. both replicas stream from the final primary, which has every
//     acknowledged write, and docker-compose down -v leaves no container,
//     volume or network.
func TestComposeStack(t *testing.T) {
	if os.Getenv("PGHA_COMPOSE_TEST") != "1" {
		t.Skip("the docker-compose stack test runs under make compose-test (scripts/compose-test.sh)")
	}
	if out, err := run("docker", "info"); err != nil {
		t.Fatalf("PGHA_COMPOSE_TEST=1 but no Docker engine: %v\n%s", err, out)
	}
	sc := &scenario{t: t, s: newStack(t), ttl: composeTTL(t), password: os.Getenv("POSTGRES_PASSWORD")}
	if sc.password == "" {
		sc.password = defaultPassword
	}
	defer func() {
		t.Logf("summary (project %s):\n  %s", sc.s.project, strings.Join(sc.report, "\n  "))
	}()

	began := time.Now()
	sc.s.mustCompose("up", "-d", "--no-build")
	sc.note("docker-compose up -d returned after %s", since(began))
	primary := sc.s.hostPort("haproxy", 5000)
	sc.s.waitFor(4*time.Minute, "a write through HAProxy's port 5000", func() string {
		return createTable(primary, sc.password)
	})
	sc.note("HAProxy's port 5000 took writes %s after up", since(began))
	st := sc.waitState(2*time.Minute, "a leader, two streaming replicas, one of them synchronous", "pgha1", func(c clusterState) bool {
		return c.leader != "" && len(c.streamed) == 2 && c.sync != "" && c.streamed[c.sync]
	})
	sc.note("cluster healthy %s after up: %s", since(began), st)

	// The pooler writer's node is the replica that is not synchronous: it
	// stays a replica when the leader is killed.
	for _, m := range st.members {
		if m.Member != st.leader && m.Member != st.sync {
			sc.via = m.Member
		}
	}
	sc.hw = newWriter("haproxy", primary, sc.password)
	sc.pw = newWriter("pooler-"+sc.via, sc.s.hostPort(sc.via, 6432), sc.password)
	sc.writers = []*writer{sc.hw, sc.pw}
	stopWriters := startWriters(sc.writers...)
	defer stopWriters()
	sc.s.waitFor(30*time.Second, "acknowledged writes from both writers", func() string {
		return ackedAfter(sc.writers, began, 20)
	})

	// The order keeps the node of the pooler writer running throughout:
	// the first two leaders are never it.
	killed, _ := sc.killLeader(st)
	sc.restart(killed)
	stopped, _ := sc.stopLeader()
	sc.restart(stopped)
	sc.switchover()
	st = sc.stopEtcdLeader()
	st = sc.waitState(2*time.Minute, "both replicas streaming from the leader", sc.via, func(c clusterState) bool {
		return c.leader != "" && len(c.streamed) == 2
	})
	sc.note("at the end: %s", st)

	stopWriters()
	n := sc.checkAcked(st.leader, sc.writers)
	sc.note("all %d acknowledged writes (%d through HAProxy, %d through %s's pooler) on the final primary %s",
		n, len(sc.hw.ackedIDs()), len(sc.pw.ackedIDs()), sc.via, st.leader)
	downTook := sc.s.tearDown()
	sc.note("docker-compose down -v took %s; no container, volume or network of the project left", round(downTook))
	sc.note("whole run: %s", since(began))
}

// scenario is the state TestComposeStack's phases share.
type scenario struct {
	t        *testing.T
	s        *stack
	ttl      time.Duration
	password string
	via      string  // the node whose pooler pw writes through
	hw, pw   *writer // through HAProxy's 5000, through via's pooler
	writers  []*writer
	report   []string
}

// note logs a measurement and keeps it for the summary.
func (sc *scenario) note(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	sc.report = append(sc.report, line)
	sc.t.Log(line)
}

// waitState polls pghactl list in node's container until ok holds.
func (sc *scenario) waitState(d time.Duration, what, node string, ok func(clusterState) bool) clusterState {
	sc.t.Helper()
	var st clusterState
	sc.s.waitFor(d, what, func() string {
		var err error
		if st, err = sc.s.state(node); err != nil {
			return err.Error()
		}
		if !ok(st) {
			return st.String()
		}
		return ""
	})
	return st
}

// gaps describes each writer's longest gap and error count in [from, to].
func gaps(from, to time.Time, ws ...*writer) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%s longest gap %s (%d errors)", w.name, round(w.longestGap(from, to)), len(w.errorsBetween(from, to)))
	}
	return strings.Join(parts, ", ")
}

// startWriters runs each writer in its own goroutine until the returned
// stop is called (stop waits for them; calling it again does nothing).
func startWriters(ws ...*writer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	return func() { cancel(); wg.Wait() }
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
func (sc *scenario) checkAcked(node string, ws []*writer) int {
	t, s, password := sc.t, sc.s, sc.password
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
