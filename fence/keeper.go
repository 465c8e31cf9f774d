package fence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/replication"
)

// KeeperConfig is what a keeper guards and how.
type KeeperConfig struct {
	// DataDir is the Postgres data directory guarded.
	DataDir string `json:"data_dir"`
	// Socket is the Unix socket the keeper listens on.
	Socket string `json:"socket"`
	// Until is the first deadline, on CLOCK_BOOTTIME: a keeper always
	// starts armed, since it is started to guard a write permission.
	Until time.Duration `json:"until"`
	// Watchdog is the Linux watchdog to hold while writes are allowed.
	Watchdog config.Watchdog `json:"watchdog"`
	// Linger is how long the keeper stays with no daemon connected and
	// nothing left to guard before it exits (default 2 s).
	Linger time.Duration `json:"linger"`
	// Poll is how often it checks the deadline (default 20 ms).
	Poll time.Duration `json:"poll"`
}

// Keeper is the process that stops Postgres when the write permission the
// daemon gave it runs out.
type Keeper struct {
	cfg KeeperConfig
	log *slog.Logger

	mu        sync.Mutex
	until     time.Duration // CLOCK_BOOTTIME
	clients   int
	idleSince time.Duration
	fences    int
	wd        *watchdogDevice
	wdErr     string // last watchdog failure, logged once
	dismissed chan struct{}
	dismiss   sync.Once
}

// NewKeeper returns a keeper for cfg; Run starts it.
func NewKeeper(cfg KeeperConfig, log *slog.Logger) *Keeper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 2 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	if cfg.Watchdog.Mode == "" {
		cfg.Watchdog.Mode = "off"
	}
	return &Keeper{cfg: cfg, log: log.With("data_dir", cfg.DataDir), until: cfg.Until, idleSince: bootNow(), dismissed: make(chan struct{})}
}

// Run listens on the socket and guards the data directory until ctx
// ends, a daemon dismisses it (bye) with nothing left to guard, or no
// daemon has been connected for Linger while nothing is left to guard.
func (k *Keeper) Run(ctx context.Context) error {
	ln, err := listenUnix(k.cfg.Socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var connMu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			connMu.Lock()
			conns[c] = true
			connMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				k.serve(c)
				connMu.Lock()
				delete(conns, c)
				connMu.Unlock()
			}()
		}
	}()
	k.log.Info("fence keeper started", "socket", k.cfg.Socket, "pid", os.Getpid(), "allowed_for", (k.cfg.Until - bootNow()).Round(time.Millisecond).String())
	k.guard(ctx)
	_ = ln.Close()
	connMu.Lock()
	for c := range conns {
		_ = c.Close()
	}
	connMu.Unlock()
	wg.Wait()
	k.mu.Lock()
	if k.wd != nil {
		k.wd.close()
		k.wd = nil
	}
	k.mu.Unlock()
	k.log.Info("fence keeper exits")
	return nil
}

// guard checks the deadline every Poll until it is time to exit.
func (k *Keeper) guard(ctx context.Context) {
	tick := time.NewTicker(k.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.dismissed:
			return
		case <-tick.C:
		}
		if k.check() {
			return
		}
	}
}

// check fences when the deadline passed while Postgres may take writes,
// and reports whether the keeper may exit.
func (k *Keeper) check() bool {
	now := bootNow()
	k.mu.Lock()
	expired := now >= k.until
	idle := k.clients == 0 && now-k.idleSince >= k.cfg.Linger
	overdue := now - k.until
	k.mu.Unlock()
	if !expired {
		return false
	}
	if replication.MayTakeWrites(k.cfg.DataDir) {
		k.log.Error("fence keeper: the write permission ran out while postgres still takes writes (the daemon did not renew it: dead, frozen or cut off); stopping postgres now",
			"overdue", overdue.Round(time.Millisecond).String())
		if err := replication.StopNow(k.cfg.DataDir, time.Second); err != nil {
			k.log.Error("fence keeper: stop postgres", "err", err)
		} else {
			k.log.Warn("fence keeper: postgres stopped")
		}
		k.mu.Lock()
		k.fences++
		k.mu.Unlock()
		return false
	}
	k.mu.Lock()
	if k.wd != nil {
		// Nothing takes writes any more: the machine need not be reset.
		k.wd.close()
		k.wd = nil
		k.log.Info("fence keeper: watchdog disarmed")
	}
	k.mu.Unlock()
	return idle
}

// serve answers one daemon connection, one request line at a time.
func (k *Keeper) serve(c net.Conn) {
	defer c.Close()
	if err := checkPeer(c); err != nil {
		k.log.Warn("fence keeper: refused a connection", "err", err)
		fmt.Fprintf(c, "err %s\n", err)
		return
	}
	k.mu.Lock()
	k.clients++
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.clients--
		if k.clients == 0 {
			k.idleSince = bootNow()
		}
		k.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c, maxLine)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			fmt.Fprintf(c, "err request longer than %d bytes\n", maxLine)
			return
		}
		if err != nil {
			return
		}
		req, err := parseRequest(string(line))
		if err != nil {
			fmt.Fprintf(c, "err %s\n", err)
			continue
		}
		if _, err := fmt.Fprintf(c, "%s\n", k.handle(req)); err != nil {
			return
		}
	}
}

// handle carries out one request and returns the answer line.
func (k *Keeper) handle(req request) string {
	switch req.verb {
	case "allow":
		k.mu.Lock()
		defer k.mu.Unlock()
		if err := k.holdWatchdog(req); err != nil {
			return "err " + err.Error()
		}
		k.until = req.until
		return "ok"
	case "bye":
		if replication.MayTakeWrites(k.cfg.DataDir) {
			return "err postgres still takes writes: the keeper stays and stops it when the permission runs out"
		}
		k.dismiss.Do(func() { close(k.dismissed) })
		return "ok"
	default: // status
		k.mu.Lock()
		defer k.mu.Unlock()
		wd := "off"
		if k.wd != nil {
			wd = "armed"
		}
		return fmt.Sprintf("ok pid=%d allowed_for=%s fences=%d watchdog=%s", os.Getpid(), (k.until - bootNow()).Round(time.Millisecond), k.fences, wd)
	}
}

// holdWatchdog opens the watchdog on the first permission and kicks it on
// each fresh one: a permission whose keepalive was sent more than the
// safety margin ago is not fresh (a kick then could let the device fire
// only after the lease expired). In required mode a device that cannot be
// armed refuses the permission. k.mu held.
func (k *Keeper) holdWatchdog(req request) error {
	w := k.cfg.Watchdog
	if w.Mode == "off" {
		return nil
	}
	margin := w.SafetyMargin.D()
	if k.wd == nil {
		wd, err := openWatchdog(w.Device, req.ttl-margin)
		if err != nil {
			if w.Mode == "required" {
				return err
			}
			if msg := err.Error(); msg != k.wdErr {
				k.wdErr = msg
				k.log.Warn("fence keeper: no watchdog (watchdog.mode automatic)", "err", err)
			}
			return nil
		}
		k.wd = wd
		k.log.Info("fence keeper: watchdog armed", "device", w.Device, "timeout", wd.timeout.String())
	}
	if bootNow()-req.acked < margin {
		if err := k.wd.kick(); err != nil && w.Mode == "required" {
			return err
		}
	}
	return nil
}

// listenUnix listens on path (mode 0600). A socket file left by a dead
// keeper is replaced; a live keeper's is not.
func listenUnix(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("fence: another keeper already listens on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fence: remove stale socket %s: %w", path, err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("fence: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// checkPeer accepts only processes of this keeper's user (or root).
func checkPeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("fence: not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("fence: peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("fence: uid %d may not talk to the keeper (only uid %d)", cred.Uid, os.Geteuid())
	}
	return nil
}

// describe is the keeper's process title in ps.
func describe(dataDir string) string {
	return "fence-keeper " + strings.TrimSpace(dataDir)
}
