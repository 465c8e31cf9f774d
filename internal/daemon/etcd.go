package daemon

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedEtcd is a single-member etcd running inside this process.
type EmbeddedEtcd struct {
	e *embed.Etcd
	// ClientURL is where clients connect (http://host:port).
	ClientURL string
}

// StartEmbeddedEtcd starts a single-member etcd with its data in dir,
// serving clients on clientAddr and peers on peerAddr (both host:port).
// It returns once the server is ready, or fails after ready.
func StartEmbeddedEtcd(ctx context.Context, dir, name, clientAddr, peerAddr string, ready time.Duration) (*EmbeddedEtcd, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: embedded etcd data dir %s: %w", dir, err)
	}
	cu, err := url.Parse("http://" + clientAddr)
	if err != nil {
		return nil, fmt.Errorf("daemon: embedded etcd client address %q: %w", clientAddr, err)
	}
	pu, err := url.Parse("http://" + peerAddr)
	if err != nil {
		return nil, fmt.Errorf("daemon: embedded etcd peer address %q: %w", peerAddr, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = name + "=" + pu.String()
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(nopZap())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("daemon: start embedded etcd on %s: %w", clientAddr, err)
	}
	t := time.NewTimer(ready)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case <-t.C:
		e.Close()
		return nil, fmt.Errorf("daemon: embedded etcd on %s not ready within %s", clientAddr, ready)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("daemon: embedded etcd start: %w", ctx.Err())
	}
	return &EmbeddedEtcd{e: e, ClientURL: strings.TrimSuffix(cu.String(), "/")}, nil
}

// Close stops the server.
func (e *EmbeddedEtcd) Close() { e.e.Close() }

// Err reports a fatal server error.
func (e *EmbeddedEtcd) Err() <-chan error { return e.e.Err() }
