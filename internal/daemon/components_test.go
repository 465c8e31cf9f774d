package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

// poolerDSN is a superuser URL through addr (a pooler port).
func poolerDSN(addr string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable&connect_timeout=5", pgtest.SuperUser, pgtest.SuperPassword, addr)
}

// httpDo sends one request to a REST API and returns status and body.
func httpDo(method, url string, body []byte) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// write inserts tag through c and returns the port of the server that took
// it.
func write(ctx context.Context, c *pgx.Conn, tag string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var port int
	err := c.QueryRow(ctx, "INSERT INTO sw (tag) VALUES ($1) RETURNING inet_server_port()", tag).Scan(&port)
	return port, err
}

// writer is one client connection writing through a pooler in a loop.
type writer struct {
	name string
	addr string
	c    *pgx.Conn

	mu        sync.Mutex
	acked     []string
	ports     map[int]int // server port -> acknowledged writes
	errs      []string
	reconnect int
	maxGap    time.Duration
}

func (w *writer) run(ctx context.Context, stop <-chan struct{}) {
	last := time.Now()
	for i := 0; i < 3000; i++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
		tag := fmt.Sprintf("%s-%d", w.name, i)
		port, err := write(ctx, w.c, tag)
		now := time.Now()
		w.mu.Lock()
		if err == nil {
			w.acked = append(w.acked, tag)
			w.ports[port]++
			if g := now.Sub(last); g > w.maxGap {
				w.maxGap = g
			}
			last = now
		} else {
			w.errs = append(w.errs, fmt.Sprintf("%s: %s: %v", now.Format("15:04:05.000"), tag, err))
		}
		closed := w.c.IsClosed()
		w.mu.Unlock()
		if err != nil && closed {
			// Keep measuring: the error is counted, the client reconnects.
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := pgx.Connect(cctx, poolerDSN(w.addr))
			cancel()
			if err == nil {
				w.mu.Lock()
				w.c = c
				w.reconnect++
				w.mu.Unlock()
			}
		}
	}
}

func (w *writer) ackedOn(port int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ports[port]
}

// TestComponentsSwitchover runs three daemons wired by AddComponents (REST
// API and pooler, sharing an embedded etcd) and checks what users rely
// on: a replica's pooler routes writes to the primary elsewhere and reads
// (read_only_listen) to replicas; client connections held open through
// the poolers of every node ride through a switchover requested over the
// REST API without an error, every acknowledged write is on the new
// primary; /metrics serves pooler and patroni metrics; /primary answers
// 200 on the leader only.
func TestComponentsSwitchover(t *testing.T) {
	pgtest.RequireUser(t)
	userlist := filepath.Join(t.TempDir(), "userlist.txt")
	if err := os.WriteFile(userlist, []byte(fmt.Sprintf("%q %q\n", pgtest.SuperUser, pgtest.SuperPassword)), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := daemontest.New(t, 3, daemontest.Options{Edit: func(i int, c *config.Config) {
		p := config.DefaultPooler()
		p.Enabled = true
		p.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		p.ReadOnlyListen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		p.PoolMode = "transaction"
		p.AuthType = "scram-sha-256"
		p.AuthFile = userlist
		p.DefaultPoolSize = 4
		p.QueryWaitTimeout = config.Duration(30 * time.Second)
		p.ServerConnectTimeout = config.Duration(5 * time.Second)
		c.Pooler = p
	}})
	wire := func(d *daemon.Daemon) error { return d.AddComponents("") }
	tc.Nodes[0].Start(wire)
	tc.WaitHealthy(2*time.Minute, "node1")
	tc.Nodes[1].Start(wire)
	tc.Nodes[2].Start(wire)
	lead := tc.WaitHealthy(3 * time.Minute)
	var reps []*daemontest.Node
	for _, n := range tc.Nodes {
		if n != lead {
			reps = append(reps, n)
		}
	}
	rep, cand := reps[0], reps[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// a. A replica's pooler sends writes to the leader, its read-only port
	// reaches a replica.
	testkit.Eventually(t, 30*time.Second, "DDL through "+rep.Name+"'s pooler", func() error {
		c, err := pgx.Connect(ctx, poolerDSN(rep.Config.Pooler.Listen))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "CREATE TABLE IF NOT EXISTS sw (id bigserial PRIMARY KEY, tag text UNIQUE NOT NULL)")
		return err
	})
	c, err := pgx.Connect(ctx, poolerDSN(rep.Config.Pooler.Listen))
	if err != nil {
		t.Fatal(err)
	}
	if port, err := write(ctx, c, "first"); err != nil || port != lead.PG.Port {
		t.Fatalf("write through %s's pooler: port %d err %v, want the leader %s (%d)", rep.Name, port, err, lead.Name, lead.PG.Port)
	}
	c.Close(context.Background())
	if got := lead.Count("sw WHERE tag = 'first'"); got != 1 {
		t.Fatalf("the write through the pooler is not on the leader %s (count %d)", lead.Name, got)
	}
	testkit.Eventually(t, 30*time.Second, "a read through the read-only port", func() error {
		c, err := pgx.Connect(ctx, poolerDSN(rep.Config.Pooler.ReadOnlyListen))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if !rec {
			t.Fatal("a read through the read-only port reached a primary")
		}
		return nil
	})

	// b. Writers on two connections per node's pooler, opened before the
	// switchover and reused after it.
	var ws []*writer
	for _, n := range tc.Nodes {
		for k := 0; k < 2; k++ {
			c, err := pgx.Connect(ctx, poolerDSN(n.Config.Pooler.Listen))
			if err != nil {
				t.Fatalf("connect to %s's pooler: %v", n.Name, err)
			}
			w := &writer{name: fmt.Sprintf("%s.%d", n.Name, k), addr: n.Config.Pooler.Listen, c: c, ports: map[int]int{}}
			ws = append(ws, w)
		}
	}
	defer func() {
		for _, w := range ws {
			w.c.Close(context.Background())
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx, stop) }()
	}
	stopWriters := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopWriters()
	testkit.Eventually(t, 10*time.Second, "every writer acknowledged on the old leader", func() error {
		for _, w := range ws {
			if w.ackedOn(lead.PG.Port) < 5 {
				return fmt.Errorf("%s: %d writes on %s", w.name, w.ackedOn(lead.PG.Port), lead.Name)
			}
		}
		return nil
	})

	// The REST API judges candidates from the leader's last view.
	// Streaming, and close enough to the leader's optime in that view to
	// be a candidate (under load the published positions lag a cycle).
	tc.WaitFor(30*time.Second, lead.Name+" sees "+cand.Name+" streaming and caught up", func() string {
		v, _ := lead.D.View()
		m, _ := v.Member(cand.Name)
		if m.State != cluster.StateStreaming {
			return fmt.Sprintf("%s is %s", cand.Name, m.State)
		}
		if lag := v.Status.Optime - max(m.ReplayLSN, m.ReceiveLSN, m.XLogLocation); lag > int64(v.Config.MaximumLagOnFailover) {
			return fmt.Sprintf("%s lags %d bytes in %s's view", cand.Name, lag, lead.Name)
		}
		return ""
	})
	api := "http://" + lead.Config.RESTAPI.ConnectAddress
	body, _ := json.Marshal(map[string]string{"leader": lead.Name, "candidate": cand.Name})
	start := time.Now()
	code, msg, err := httpDo(http.MethodPost, api+"/switchover", body)
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST /switchover: %d %q %v", code, msg, err)
	}
	t.Logf("POST /switchover answered after %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(msg))
	tc.WaitFor(30*time.Second, cand.Name+" leads", func() string {
		v := tc.View()
		m, _ := v.Member(cand.Name)
		if v.Leader != cand.Name || m.Role != cluster.RolePrimary {
			return fmt.Sprintf("leader %q, %s is %s/%s", v.Leader, cand.Name, m.Role, m.State)
		}
		return ""
	})
	testkit.Eventually(t, 30*time.Second, "every writer acknowledged on the new leader", func() error {
		for _, w := range ws {
			if w.ackedOn(cand.PG.Port) < 10 {
				return fmt.Errorf("%s: %d writes on %s", w.name, w.ackedOn(cand.PG.Port), cand.Name)
			}
		}
		return nil
	})
	stopWriters()

	// A statement in flight when the old primary stops may fail with
	// 57P01 or a lost server connection (the client cannot know whether it
	// committed, as with PgBouncer): at most one per connection, as each
	// runs one statement at a time. A client between transactions must see
	// a delay, never an error: a login refused while the old primary shuts
	// down (57P03) reached a client that had no statement in flight.
	var acked, bad []string
	var maxGap time.Duration
	gapOf := ""
	errCount, reconnects := 0, 0
	for _, w := range ws {
		acked = append(acked, w.acked...)
		if w.maxGap > maxGap {
			maxGap, gapOf = w.maxGap, w.name
		}
		errCount += len(w.errs)
		reconnects += w.reconnect
		t.Logf("writer %s: %d acknowledged, %d errors, longest gap %s", w.name, len(w.acked), len(w.errs), w.maxGap.Round(time.Millisecond))
		for _, e := range w.errs {
			t.Logf("writer %s: error across the switchover: %s", w.name, e)
			switch {
			case strings.Contains(e, "57P03"):
				// A server login refused while shutting down: never a
				// statement in flight.
				bad = append(bad, w.name+": "+e)
			case strings.Contains(e, "57P01"), strings.Contains(e, "server conn crashed"):
			default:
				bad = append(bad, w.name+": "+e)
			}
		}
		if len(w.errs) > 1 {
			bad = append(bad, fmt.Sprintf("%s: %d errors (one statement at a time can be in flight)", w.name, len(w.errs)))
		}
	}
	t.Logf("switchover %s -> %s through the poolers: %d writes acknowledged by %d connections, %d errors, %d reconnects, longest write gap %s (%s)",
		lead.Name, cand.Name, len(acked), len(ws), errCount, reconnects, maxGap.Round(time.Millisecond), gapOf)
	nc, err := cand.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got int
	if err := nc.QueryRow(ctx, "SELECT count(DISTINCT tag) FROM sw WHERE tag = ANY($1)", acked).Scan(&got); err != nil {
		t.Fatal(err)
	}
	nc.Close(context.Background())
	if got != len(acked) {
		t.Fatalf("%d of %d acknowledged writes are on the new primary %s", got, len(acked), cand.Name)
	}

	// c. /metrics and /primary.
	code, metrics, err := httpDo(http.MethodGet, "http://"+rep.Config.RESTAPI.ConnectAddress+"/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	labels := fmt.Sprintf(`{name=%q,scope=%q}`, rep.Name, daemontest.Scope)
	for _, want := range []string{"pgha_pooler_transactions_total{", "pgha_pooler_client_connections ", "pgha_pooler_client_wait_seconds_bucket{",
		"patroni_primary" + labels + " 0", "patroni_replica" + labels + " 1", "patroni_postgres_running" + labels + " 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("GET /metrics on %s lacks %q:\n%s", rep.Name, want, metrics)
		}
	}
	if m := regexp.MustCompile(`(?m)^pgha_ha_loop_duration_seconds_count(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Errorf("GET /metrics on %s: the HA loop duration histogram has no observations: %v", rep.Name, m)
	}
	primaryIs := func(n *daemontest.Node, want int) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, fmt.Sprintf("GET /primary on %s is %d", n.Name, want), func() error {
			code, body, err := httpDo(http.MethodGet, "http://"+n.Config.RESTAPI.ConnectAddress+"/primary", nil)
			if err != nil {
				return err
			}
			if code != want {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	primaryIs(cand, http.StatusOK)
	primaryIs(lead, http.StatusServiceUnavailable)
	primaryIs(rep, http.StatusServiceUnavailable)

	if len(bad) == 0 {
		return
	}
	t.Errorf("clients got errors across the switchover: %s", strings.Join(bad, "; "))
}

// TestComponentsLocalSocket: with pooler.local_unix_socket the pooler of
// the primary's node reaches its own Postgres over the Unix socket, with
// a password login that pg_hba.conf's added local line allows.
func TestComponentsLocalSocket(t *testing.T) {
	pgtest.RequireUser(t)
	userlist := filepath.Join(t.TempDir(), "userlist.txt")
	if err := os.WriteFile(userlist, []byte("\"app\" \"app-secret\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := daemontest.New(t, 1, daemontest.Options{Edit: func(i int, c *config.Config) {
		p := config.DefaultPooler()
		p.Enabled = true
		p.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		p.AuthType = "scram-sha-256"
		p.AuthFile = userlist
		p.LocalUnixSocket = true
		p.QueryWaitTimeout = config.Duration(30 * time.Second)
		c.Pooler = p
	}})
	wire := func(d *daemon.Daemon) error { return d.AddComponents("") }
	n := tc.Nodes[0]
	n.Start(wire)
	tc.WaitHealthy(2*time.Minute, n.Name)
	n.PG.Exec(t, "CREATE ROLE app LOGIN PASSWORD 'app-secret'")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var local bool
	testkit.Eventually(t, 30*time.Second, "a query through the pooler", func() error {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:app-secret@%s/postgres?sslmode=disable&connect_timeout=5", n.Config.Pooler.Listen))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		return c.QueryRow(ctx, "SELECT client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&local)
	})
	if !local {
		t.Fatal("the pooler reached its own primary over TCP, want the Unix socket")
	}
}

// TestComponentsPoolerDefaultAuth: a pooler with neither auth_file nor
// auth_query checks logins against Postgres's own passwords (auth_query
// as the superuser), so a role created in Postgres logs in through the
// pooler, and a wrong password gets 28P01.
func TestComponentsPoolerDefaultAuth(t *testing.T) {
	pgtest.RequireUser(t)
	tc := daemontest.New(t, 1, daemontest.Options{Edit: func(i int, c *config.Config) {
		p := config.DefaultPooler()
		p.Enabled = true
		p.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		p.QueryWaitTimeout = config.Duration(30 * time.Second)
		c.Pooler = p
		c.PostgreSQL.PgHBA = append(c.PostgreSQL.PgHBA, "host all all 127.0.0.1/32 scram-sha-256")
	}})
	n := tc.Nodes[0]
	n.Start(func(d *daemon.Daemon) error { return d.AddComponents("") })
	tc.WaitHealthy(2*time.Minute, n.Name)
	n.PG.Exec(t, "CREATE ROLE app2 LOGIN PASSWORD 'app2-secret'")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := func(pw string) string {
		return fmt.Sprintf("postgres://app2:%s@%s/postgres?sslmode=disable&connect_timeout=5", pw, n.Config.Pooler.Listen)
	}
	var who string
	testkit.Eventually(t, 30*time.Second, "a login through the pooler", func() error {
		c, err := pgx.Connect(ctx, dsn("app2-secret"))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		return c.QueryRow(ctx, "SELECT current_user").Scan(&who)
	})
	if who != "app2" {
		t.Fatalf("current_user %q, want app2", who)
	}
	_, err := pgx.Connect(ctx, dsn("wrong"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: want SQLSTATE 28P01, got %v", err)
	}
}
