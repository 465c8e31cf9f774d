package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/pgha/pgha/replication"
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
	if err := makeEtcdDir(dir); err != nil {
		return nil, err
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

// makeEtcdDir creates the embedded etcd's data directory: mode 0700 and
// this process's own, since it holds the cluster's keys. Its missing
// parents are made traversable (0755), as they may also lead to the
// Postgres data directory beside it (the default, <name>.etcd next to
// it), which os_user must reach. An existing directory must be a
// directory (not a link to one) that this process owns.
func makeEtcdDir(dir string) error {
	if err := replication.MkdirParents(dir); err != nil {
		return fmt.Errorf("daemon: embedded etcd data dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("daemon: embedded etcd data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("daemon: embedded etcd data dir %s is not a directory (or is a link): %w", dir, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("daemon: embedded etcd data dir %s: %w", dir, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("daemon: embedded etcd data dir %s belongs to uid %d, not to this daemon (uid %d): move it away or chown it", dir, sys.Uid, os.Geteuid())
	}
	if err := f.Chmod(0o700); err != nil {
		return fmt.Errorf("daemon: embedded etcd data dir %s: %w", dir, err)
	}
	return nil
}
