package haproxytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testkit"
)

// Binary is Debian's haproxy.
const Binary = "/usr/sbin/haproxy"

// Node is one server line: the node's Postgres (or stand-in) port and its
// REST API port.
type Node struct {
	Name     string
	PGPort   int
	RESTPort int
}

// HAProxy is a running HAProxy.
type HAProxy struct {
	// PrimaryPort, ReplicaPort and StatsPort replace 5000, 5001 and 7000.
	PrimaryPort, ReplicaPort, StatsPort int
	cmd                                 *exec.Cmd
	mu                                  sync.Mutex
	logs                                bytes.Buffer
}

// ConfigPath returns scripts/haproxy.cfg of this repository.
func ConfigPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "haproxy.cfg")
}

var serverLine = regexp.MustCompile(`(?m)^(\s*server )node\d+ 127\.0\.0\.1:\d+ (.*) check port \d+\s*$`)

// Rewrite turns the shipped config into one for the given ports: the
// frontends bind to the given ports and each listen section gets one
// server line per node (replacing the demo's three).
func Rewrite(cfg string, primary, replica, stats int, nodes []Node) (string, error) {
	for _, r := range [][2]string{{"127.0.0.1:5000", strconv.Itoa(primary)}, {"127.0.0.1:5001", strconv.Itoa(replica)}, {"127.0.0.1:7000", strconv.Itoa(stats)}} {
		if !strings.Contains(cfg, "bind "+r[0]) {
			return "", fmt.Errorf("haproxytest: config has no 'bind %s'", r[0])
		}
		cfg = strings.ReplaceAll(cfg, "bind "+r[0], "bind 127.0.0.1:"+r[1])
	}
	var out []string
	lines := strings.Split(cfg, "\n")
	for i := 0; i < len(lines); i++ {
		m := serverLine.FindStringSubmatch(lines[i])
		if m == nil {
			out = append(out, lines[i])
			continue
		}
		// Replace the run of demo server lines with ours.
		for i+1 < len(lines) && serverLine.MatchString(lines[i+1]) {
			i++
		}
		for _, n := range nodes {
			out = append(out, fmt.Sprintf("%s%s 127.0.0.1:%d %s check port %d", m[1], n.Name, n.PGPort, m[2], n.RESTPort))
		}
	}
	return strings.Join(out, "\n"), nil
}

// Start runs HAProxy with scripts/haproxy.cfg rewritten for nodes, in its
// own process group, killed in t.Cleanup. It returns once the frontends
// accept connections.
func Start(t testing.TB, nodes []Node) *HAProxy {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("haproxytest: %s not installed (scripts/install-deps.sh installs it): %v", Binary, err)
	}
	raw, err := os.ReadFile(ConfigPath())
	if err != nil {
		t.Fatalf("haproxytest: read shipped config: %v", err)
	}
	h := &HAProxy{PrimaryPort: testkit.FreePort(t), ReplicaPort: testkit.FreePort(t), StatsPort: testkit.FreePort(t)}
	cfg, err := Rewrite(string(raw), h.PrimaryPort, h.ReplicaPort, h.StatsPort, nodes)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testkit.CheckNoLeaks(t, dir) // after the kill below: no haproxy outlives the test
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(Binary, "-db", "-f", path)
	h.cmd.Stdout, h.cmd.Stderr = h, h
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("haproxytest: start haproxy: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = h.cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("haproxytest: haproxy pid %d did not exit after SIGKILL", h.cmd.Process.Pid)
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	exited := false
	err = testkit.Poll(ctx, 10*time.Second, func() error {
		select {
		case <-done:
			exited = true
			stop()
			return errors.New("exited")
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", h.StatsPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	switch {
	case exited:
		t.Fatalf("haproxytest: haproxy exited at start:\n%s", h.Logs())
	case err != nil:
		t.Fatalf("haproxytest: haproxy not listening within 10s:\n%s", h.Logs())
	}
	return h
}

// Write collects HAProxy's output.
func (h *HAProxy) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.logs.Len() < 1<<20 {
		h.logs.Write(p)
	}
	return len(p), nil
}

// Logs returns what HAProxy printed.
func (h *HAProxy) Logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs.String()
}

// PrimaryAddr and ReplicaAddr are the frontends' addresses.
func (h *HAProxy) PrimaryAddr() string { return fmt.Sprintf("127.0.0.1:%d", h.PrimaryPort) }

// ReplicaAddr is the read-only frontend's address.
func (h *HAProxy) ReplicaAddr() string { return fmt.Sprintf("127.0.0.1:%d", h.ReplicaPort) }
