package restapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/restapi/haproxytest"
)

// nameServer stands in for a node's Postgres: it writes the node's name
// to every connection and holds it open until the client or the test
// closes it.
func nameServer(t *testing.T, name string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.WriteString(c, name+"\n")
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}

// whoAnswers connects through addr and returns the backend's name, ""
// when HAProxy has no server to send to.
func whoAnswers(addr string) (string, net.Conn) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", nil
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil
	}
	_ = c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line), c
}

// waitRouting polls addr until the set of backends seen in n connections
// equals want.
func waitRouting(t *testing.T, addr string, want []string, timeout time.Duration) {
	t.Helper()
	var seen map[string]bool
	err := testkit.Poll(context.Background(), timeout, func() error {
		seen = map[string]bool{}
		for range 6 {
			name, c := whoAnswers(addr)
			if c != nil {
				c.Close()
			}
			seen[name] = true
		}
		ok := len(seen) == len(want)
		for _, w := range want {
			ok = ok && seen[w]
		}
		return testkit.Missing(ok, "routing")
	})
	if err != nil {
		t.Fatalf("%s routes to %v, want %v", addr, seen, want)
	}
}

// TestHAProxyRoutesByRole runs the shipped scripts/haproxy.cfg in real
// HAProxy in front of three REST APIs (fake node state) and stand-in
// Postgres ports: 5000 reaches only the primary, 5001 only replicas within
// the lag limit, and a role change moves the traffic and cuts sessions to
// the demoted node.
func TestHAProxyRoutesByRole(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (needs HAProxy): skipped with -short")
	}
	names := []string{"node1", "node2", "node3"}
	nodes := map[string]*fakeNode{}
	var hn []haproxytest.Node
	for _, name := range names {
		st := replicaStatus(100 * mb)
		if name == "node1" {
			st = primaryStatus()
		}
		st.Name = name
		n := &fakeNode{view: baseView(), ok: true, local: st}
		nodes[name] = n
		s, _ := runServer(t, config.RESTAPI{Listen: "127.0.0.1:0"}, n)
		_, port, _ := net.SplitHostPort(s.Addr())
		hn = append(hn, haproxytest.Node{Name: name, PGPort: nameServer(t, name), RESTPort: atoiT(t, port)})
	}
	// node3 lags 20 MiB behind: out of the 1MB replica pool.
	nodes["node3"].mu.Lock()
	nodes["node3"].local = replicaStatus(80 * mb)
	nodes["node3"].local.Name = "node3"
	nodes["node3"].mu.Unlock()

	h := haproxytest.Start(t, hn)
	waitRouting(t, h.PrimaryAddr(), []string{"node1"}, 15*time.Second)
	waitRouting(t, h.ReplicaAddr(), []string{"node2"}, 15*time.Second)

	// A client session on the primary.
	name, held := whoAnswers(h.PrimaryAddr())
	if name != "node1" || held == nil {
		t.Fatalf("session through the primary port reached %q", name)
	}
	defer held.Close()

	// Switchover: node2 becomes the leader, node1 a replica; node3 caught up.
	set := func(name string, st LocalStatus) {
		st.Name = name
		nodes[name].mu.Lock()
		nodes[name].local = st
		nodes[name].mu.Unlock()
	}
	set("node1", replicaStatus(100*mb))
	p := primaryStatus()
	set("node2", p)
	set("node3", replicaStatus(100*mb))
	start := time.Now()
	waitRouting(t, h.PrimaryAddr(), []string{"node2"}, 15*time.Second)
	t.Logf("primary port moved to node2 in %s", time.Since(start).Round(10*time.Millisecond))
	waitRouting(t, h.ReplicaAddr(), []string{"node1", "node3"}, 15*time.Second)

	// on-marked-down shutdown-sessions: the old primary's session is cut.
	_ = held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("session to the demoted node1 still open (read err %v)", err)
	}

	// Lost etcd beyond the lease: the primary leaves the pool, nobody is
	// routed writes.
	nodes["node2"].mu.Lock()
	nodes["node2"].local.IsLeader = false
	nodes["node2"].ok = false
	nodes["node2"].mu.Unlock()
	waitRouting(t, h.PrimaryAddr(), []string{""}, 15*time.Second)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func atoiT(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("bad port %q: %v", s, err)
	}
	return n
}
