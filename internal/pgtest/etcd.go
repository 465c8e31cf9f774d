package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/pgha/pgha/internal/testkit"
)

// enableAuth creates user root (role root) with o.RootPassword and turns
// authentication on.
func enableAuth(t testing.TB, url string, o EtcdOptions) {
	t.Helper()
	if o.CertFile != "" {
		t.Fatal("pgtest: EtcdOptions: TLS and RootPassword together are not supported")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("pgtest: etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.UserAdd(ctx, "root", o.RootPassword); err != nil {
		t.Fatalf("pgtest: etcd user root: %v", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatalf("pgtest: etcd grant root: %v", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatalf("pgtest: etcd auth enable: %v", err)
	}
}

// EtcdBinary is Debian's etcd server (package etcd-server).
const EtcdBinary = "/usr/bin/etcd"

func loopURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
}

// StartEtcd starts a single-member embedded etcd on free loopback ports
// with its data in a temp dir and returns its client URLs. It is closed
// in t.Cleanup.
func StartEtcd(t testing.TB) []string {
	t.Helper()
	return StartEtcdWith(t, EtcdOptions{})
}

// EtcdOptions shape the etcd StartEtcdWith runs.
type EtcdOptions struct {
	// CertFile and KeyFile, when set, make etcd serve clients over TLS
	// only (https:// URLs) and require a client certificate that CAFile
	// vouches for.
	CertFile, KeyFile, CAFile string
	// RootPassword, when set, turns authentication on: user root with
	// this password.
	RootPassword string
}

// StartEtcdWith is StartEtcd with TLS or authentication (EtcdOptions).
func StartEtcdWith(t testing.TB, o EtcdOptions) []string {
	t.Helper()
	SkipIfShort(t, "etcd")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between pick and bind
		cfg := embed.NewConfig()
		cfg.Name = "pgtest"
		cfg.Dir = filepath.Join(t.TempDir(), "etcd")
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		client, peer := loopURL(testkit.FreePort(t)), loopURL(testkit.FreePort(t))
		if o.CertFile != "" {
			client.Scheme = "https"
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.CAFile, ClientCertAuth: true}
		}
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.ListenPeerUrls = []url.URL{peer}
		cfg.AdvertisePeerUrls = []url.URL{peer}
		cfg.InitialCluster = cfg.Name + "=" + peer.String()
		cfg.ListenMetricsUrls = nil
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			e.Close()
			lastErr = err
			continue
		case <-time.After(30 * time.Second):
			e.Server.Stop()
			e.Close()
			t.Fatalf("pgtest: embedded etcd not ready after 30s")
		}
		t.Cleanup(e.Close)
		if o.RootPassword != "" {
			enableAuth(t, client.String(), o)
		}
		return []string{client.String()}
	}
	t.Fatalf("pgtest: start embedded etcd: %v", lastErr)
	return nil
}

// EtcdCluster is a cluster of /usr/bin/etcd processes.
type EtcdCluster struct {
	t       testing.TB
	Members []*EtcdMember
}

// EtcdMember is one etcd process.
type EtcdMember struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	args      []string
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	logs      *lockedWriter
}

// Endpoints returns every member's client URL.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// StartEtcdBinaryCluster runs n etcd members on loopback, waits until
// every member is healthy, and kills them all in t.Cleanup.
func StartEtcdBinaryCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	SkipIfShort(t, "etcd")
	if _, err := os.Stat(EtcdBinary); err != nil {
		t.Skipf("pgtest: SKIPPED: %s is missing: install etcd-server (scripts/install-deps.sh) to run this test", EtcdBinary)
	}
	c := &EtcdCluster{t: t}
	dir := t.TempDir()
	// After the members are killed (registered below), none may be left.
	testkit.CheckNoLeaks(t, dir)
	var initial []string
	for i := 0; i < n; i++ {
		m := &EtcdMember{Name: fmt.Sprintf("etcd%d", i), DataDir: filepath.Join(dir, fmt.Sprintf("etcd%d", i))}
		cu, pu := loopURL(testkit.FreePort(t)), loopURL(testkit.FreePort(t))
		m.ClientURL, m.PeerURL = cu.String(), pu.String()
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = []string{"--name", m.Name, "--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "pgtest", "--heartbeat-interval", "100", "--election-timeout", "1000", "--pre-vote",
			"--log-level", "error", "--logger", "zap"}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
	})
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	for _, m := range c.Members {
		if err := m.WaitHealthy(30 * time.Second); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	return c
}

// Start (re)starts the member's process.
func (m *EtcdMember) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		select {
		case <-m.done:
		default:
			return nil // running
		}
	}
	cmd := exec.Command(EtcdBinary, m.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	m.logs = &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	return nil
}

// Kill SIGKILLs the member's process group and waits for it to exit.
func (m *EtcdMember) Kill() {
	m.signal(syscall.SIGKILL)
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
}

func (m *EtcdMember) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, sig)
}

// Freeze stops the member's process (SIGSTOP): its connections stay open
// and nothing answers, as when a partition drops its packets. Thaw
// resumes it.
func (m *EtcdMember) Freeze() { m.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen member (SIGCONT).
func (m *EtcdMember) Thaw() { m.signal(syscall.SIGCONT) }

// WaitHealthy polls GET /health until it reports healthy.
func (m *EtcdMember) WaitHealthy(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	exited := false
	err := testkit.Poll(ctx, timeout, func() error {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
			exited = true
			stop()
			return errors.New("exited")
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, m.ClientURL+"/health", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		return testkit.Missing(resp.StatusCode == http.StatusOK && strings.Contains(b.String(), `"true"`), strings.TrimSpace(b.String()))
	})
	switch {
	case exited:
		return fmt.Errorf("etcd member %s exited: %s", m.Name, m.Logs())
	case err != nil:
		return fmt.Errorf("etcd member %s not healthy after %s: %v; log: %s", m.Name, timeout, err, m.Logs())
	}
	return nil
}

// Logs returns the member's output so far.
func (m *EtcdMember) Logs() string {
	m.mu.Lock()
	l := m.logs
	m.mu.Unlock()
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return lastN(l.w.String(), 2000)
}

func lastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
