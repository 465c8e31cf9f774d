package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/restapi/haproxytest"
)

// connect opens a superuser connection to addr with a short timeout.
func connect(ctx context.Context, addr string) (*pgx.Conn, error) {
	host, port, _ := net.SplitHostPort(addr)
	dsn := fmt.Sprintf("postgres://%s:%s@%s:%s/postgres?sslmode=disable&connect_timeout=2", pgtest.SuperUser, pgtest.SuperPassword, host, port)
	return pgx.Connect(ctx, dsn)
}

// serverOf runs one query through addr and returns the answering server's
// port and whether it is in recovery.
func serverOf(addr string) (port int, inRecovery bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := connect(ctx, addr)
	if err != nil {
		return 0, false, err
	}
	defer c.Close(context.Background())
	err = c.QueryRow(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &inRecovery)
	return port, inRecovery, err
}

// writeThrough inserts one row through addr and returns the port of the
// server that took it.
func writeThrough(addr, tag string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := connect(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var port int
	err = c.QueryRow(ctx, "INSERT INTO ha_writes (tag) VALUES ($1) RETURNING inet_server_port()", tag).Scan(&port)
	return port, err
}

// TestHAProxyE2E puts real HAProxy (the shipped scripts/haproxy.cfg) in
// front of a three-node cluster on real Postgres and etcd: writes through
// the primary port land on the leader and keep landing after
// `pghactl switchover --force` and after kill -9 of the primary node;
// reads through the replica port reach only replicas; the old primary
// follows the new one without pg_rewind or a re-clone.
func TestHAProxyE2E(t *testing.T) {
	pgtest.RequireUser(t)
	tc := daemontest.New(t, 3, daemontest.Options{Edit: func(_ int, c *config.Config) {
		// HAProxy fronts Postgres directly; the default pooler port would
		// also collide between the nodes.
		c.Pooler.Enabled = false
	}})
	endpoints, nodes := tc.Endpoints, tc.Nodes
	var hn []haproxytest.Node
	byPort := map[int]string{}
	for _, n := range nodes {
		_, rp, _ := net.SplitHostPort(n.Config.RESTAPI.Listen)
		restPort, _ := strconv.Atoi(rp)
		hn = append(hn, haproxytest.Node{Name: n.Name, PGPort: n.PG.Port, RESTPort: restPort})
		byPort[n.PG.Port] = n.Name
	}
	// The production wiring of `pgha run` (REST API; the pooler is off).
	wire := func(d *daemon.Daemon) error { return d.AddComponents("") }
	waitFor := tc.WaitFor
	healthy := func(leader string, members ...string) func() string {
		return func() string {
			v := tc.View()
			if v.Leader != leader {
				return "leader is " + v.Leader
			}
			for _, name := range members {
				m, ok := v.Member(name)
				switch {
				case !ok:
					return name + " has no member key"
				case name == leader && (m.Role != cluster.RolePrimary || m.State != cluster.StateRunning):
					return fmt.Sprintf("leader %s is %s/%s", name, m.Role, m.State)
				case name != leader && (m.Role != cluster.RoleReplica || m.State != cluster.StateStreaming):
					return fmt.Sprintf("%s is %s/%s", name, m.Role, m.State)
				}
			}
			return ""
		}
	}

	nodes[0].Start(wire)
	waitFor(2*time.Minute, "node1 bootstraps", healthy("node1", "node1"))
	nodes[1].Start(wire)
	nodes[2].Start(wire)
	waitFor(3*time.Minute, "replicas stream", healthy("node1", "node1", "node2", "node3"))

	h := haproxytest.Start(t, hn)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("haproxy output:\n%s", h.Logs())
		}
	})
	addrP, addrR := h.PrimaryAddr(), h.ReplicaAddr()
	// HAProxy 2.6 starts every server UP until its checks fail: wait until
	// the primary port reaches only node1.
	primaryIs := func(name string) func() string {
		return func() string {
			for range 5 {
				port, rec, err := serverOf(addrP)
				if err != nil {
					return err.Error()
				}
				if rec || byPort[port] != name {
					return fmt.Sprintf("primary port reached %s (in recovery %v)", byPort[port], rec)
				}
			}
			return ""
		}
	}
	waitFor(30*time.Second, "primary port reaches node1 only", primaryIs("node1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c, err := connect(ctx, addrP)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE ha_writes (id bigserial PRIMARY KEY, tag text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	cancel()
	if port, err := writeThrough(addrP, "first"); err != nil || byPort[port] != "node1" {
		t.Fatalf("write through the primary port landed on %q (%v), want node1", byPort[port], err)
	}
	// Reads reach only replicas: readsReach samples the replica port;
	// strict fails the test when a sample reaches a primary (after the
	// pools settled; while HAProxy's checks catch up with a role change,
	// for up to fall*inter = 2 s, a just-promoted node may still be in the
	// replica pool, as with Patroni).
	readsReach := func(strict bool, want ...string) func() string {
		return func() string {
			seen := map[string]bool{}
			for range 8 {
				port, rec, err := serverOf(addrR)
				if err != nil {
					return err.Error()
				}
				if !rec {
					if strict {
						t.Fatalf("a read through the replica port reached primary %s", byPort[port])
					}
					return "a read reached primary " + byPort[port]
				}
				seen[byPort[port]] = true
			}
			for _, w := range want {
				if !seen[w] {
					return fmt.Sprintf("reads reached %v, not yet %s", seen, w)
				}
			}
			if len(seen) != len(want) {
				return fmt.Sprintf("reads reached %v, want %v", seen, want)
			}
			return ""
		}
	}
	onlyReplicas := func(what string, want ...string) {
		t.Helper()
		waitFor(30*time.Second, what, readsReach(false, want...))
		if why := readsReach(true, want...)(); why != "" {
			t.Fatalf("%s: %s", what, why)
		}
	}
	onlyReplicas("reads through the replica port", "node2", "node3")

	// A file pg_rewind or a re-clone would remove from node1's data dir.
	marker := filepath.Join(nodes[0].PG.DataDir, "pgha_e2e_marker")
	if err := os.WriteFile(marker, []byte("stays unless rewound or recloned\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A writer through the primary port during the switchover.
	var mu sync.Mutex
	var acked []string
	var writeErrs []string
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; i < 2000; i++ {
			select {
			case <-stopWriter:
				return
			case <-time.After(50 * time.Millisecond):
			}
			tag := fmt.Sprintf("w%d", i)
			_, err := writeThrough(addrP, tag)
			mu.Lock()
			if err == nil {
				acked = append(acked, tag)
			} else if len(writeErrs) < 5 {
				writeErrs = append(writeErrs, err.Error())
			}
			mu.Unlock()
		}
	}()

	waitFor(30*time.Second, "some writes land on node1 first", func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 5 {
			return fmt.Sprintf("%d writes acknowledged (errors %v)", len(acked), writeErrs)
		}
		return ""
	})
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	app.Reader = strings.NewReader("")
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	start := time.Now()
	err = app.RunContext(ctx, []string{"pghactl", "-d", endpoints[0], "--scope", daemontest.Scope, "switchover", "--candidate", "node2", "--force"})
	cancel()
	if err != nil {
		t.Fatalf("pghactl switchover: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `Successfully switched over to "node2"`) {
		t.Errorf("pghactl switchover output:\n%s", out.String())
	}
	waitFor(30*time.Second, "writes land on node2", func() string {
		port, err := writeThrough(addrP, "after-switchover")
		if err != nil {
			return err.Error()
		}
		if byPort[port] != "node2" {
			return "write landed on " + byPort[port]
		}
		return ""
	})
	t.Logf("switchover to node2: %s until writes through HAProxy land on it", time.Since(start).Round(10*time.Millisecond))
	waitFor(time.Minute, "node1 follows node2", healthy("node2", "node1", "node2", "node3"))
	// pghactl list and history see the new topology.
	ctlRun := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		app := newApp()
		app.Writer, app.ErrWriter, app.Reader = &out, &out, strings.NewReader("")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := app.RunContext(ctx, append([]string{"pghactl", "-d", endpoints[0], "--scope", daemontest.Scope}, args...)); err != nil {
			t.Fatalf("pghactl %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	list := ctlRun("list")
	t.Logf("pghactl list after the switchover:\n%s", list)
	for _, want := range []string{"| node2  | 127.0.0.1:", "| Leader  | running   |", "| Replica | streaming |"} {
		if !strings.Contains(list, want) {
			t.Errorf("pghactl list lacks %q", want)
		}
	}
	if hist := ctlRun("history", "-f", "tsv"); !strings.Contains(hist, "node2") {
		t.Errorf("pghactl history has no entry for node2:\n%s", hist)
	}
	// Maintenance mode through PATCH /config, seen by every member's API.
	if out := ctlRun("pause", "--wait"); !strings.Contains(out, "Success: cluster management is paused") {
		t.Errorf("pghactl pause --wait:\n%s", out)
	}
	if out := ctlRun("list"); !strings.Contains(out, " Maintenance mode: on") {
		t.Errorf("pghactl list while paused:\n%s", out)
	}
	if port, err := writeThrough(addrP, "paused"); err != nil || byPort[port] != "node2" {
		t.Errorf("write while paused landed on %q (%v)", byPort[port], err)
	}
	if out := ctlRun("resume", "--wait"); !strings.Contains(out, "Success: cluster management is resumed") {
		t.Errorf("pghactl resume --wait:\n%s", out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("node1 was rewound or recloned to follow node2 (marker gone: %v)", err)
	}
	waitFor(30*time.Second, "the writer's writes land", func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 20 {
			return fmt.Sprintf("%d writes acknowledged (errors %v)", len(acked), writeErrs)
		}
		return ""
	})
	close(stopWriter)
	<-writerDone
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	if len(want) == 0 {
		t.Fatalf("no write was acknowledged during the switchover: %v", writeErrs)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	c, err = connect(ctx, addrP)
	if err != nil {
		t.Fatal(err)
	}
	var got int
	if err := c.QueryRow(ctx, "SELECT count(DISTINCT tag) FROM ha_writes WHERE tag = ANY($1)", want).Scan(&got); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	cancel()
	if got != len(want) {
		t.Fatalf("%d of %d acknowledged writes survived the switchover", got, len(want))
	}
	t.Logf("%d writes acknowledged through HAProxy during the switchover, all on node2", len(want))
	onlyReplicas("reads reach node1 and node3", "node1", "node3")

	// kill -9 of the primary node.
	start = time.Now()
	nodes[1].Kill9()
	var newLeader string
	waitFor(90*time.Second, "writes resume after kill -9 of node2", func() string {
		port, err := writeThrough(addrP, "after-kill")
		if err != nil {
			return err.Error()
		}
		newLeader = byPort[port]
		if newLeader == "node2" {
			t.Fatalf("a write landed on the killed node2")
		}
		return ""
	})
	t.Logf("kill -9 of node2: writes through HAProxy resumed on %s after %s", newLeader, time.Since(start).Round(10*time.Millisecond))
	other := "node1"
	if newLeader == "node1" {
		other = "node3"
	}
	waitFor(time.Minute, other+" follows "+newLeader, healthy(newLeader, newLeader, other))
	onlyReplicas("reads reach only "+other, other)
}
