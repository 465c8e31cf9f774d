package fence

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgha/pgha/config"
)

// ErrRefused marks a permission the keeper refused (watchdog.mode
// required with a device that cannot be armed): the node must not lead.
var ErrRefused = errors.New("fence: keeper refused the write permission")

// ClientConfig says which keeper to talk to and how to start one.
type ClientConfig struct {
	// DataDir is the Postgres data directory the keeper guards.
	DataDir string
	// Socket is the keeper's Unix socket (beside Postgres's own).
	Socket string
	// Watchdog is passed on to a keeper this client starts.
	Watchdog config.Watchdog
	// Executable is the program to start as the keeper (default: this
	// one); it must call RunKeeperIfAsked first thing in main.
	Executable string
	// LogFile is where a started keeper logs (appended).
	LogFile string
	// Prepare, when set, runs before a keeper is started (it creates the
	// socket's directory, owned as Postgres needs it).
	Prepare func() error
	Log     *slog.Logger
}

// Client is the daemon's side: it extends the keeper's deadline while the
// node may take writes, starting a keeper the first time it needs one.
// Its methods are safe for concurrent use.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
}

// NewClient returns a client for cfg; nothing is started until Allow.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: cfg.Log}
}

// Allow tells the keeper this node may take writes until until: acked is
// the send time of the lease keepalive behind it, ttl the lease's ttl (for
// the watchdog's timeout). It connects to the running keeper, or starts
// one when none answers. An until in the past is not sent.
func (c *Client) Allow(until, acked time.Time, ttl time.Duration) error {
	if !time.Now().Before(until) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		if c.conn == nil {
			if err := c.connectOrStart(until); err != nil {
				return err
			}
		}
		req := request{verb: "allow", until: bootOf(until), acked: bootOf(acked), ttl: ttl}
		ans, err := c.ask(req.String())
		if err == nil {
			if msg, bad := strings.CutPrefix(ans, "err "); bad {
				return fmt.Errorf("%w: %s", ErrRefused, msg)
			}
			return nil
		}
		last = err
		c.drop()
	}
	return last
}

// Status returns the keeper's status line, or an error when no keeper
// answers (none is started).
func (c *Client) Status() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if err := c.connect(); err != nil {
			return "", err
		}
	}
	ans, err := c.ask("status")
	if err != nil {
		c.drop()
	}
	return ans, err
}

// Dismiss tells the keeper the daemon stopped cleanly: it exits unless
// Postgres still takes writes. No keeper is started for this.
func (c *Client) Dismiss() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if err := c.connect(); err != nil {
			return nil // no keeper: nothing to dismiss
		}
	}
	ans, err := c.ask("bye")
	c.drop()
	if err != nil {
		return err
	}
	if msg, bad := strings.CutPrefix(ans, "err "); bad {
		return errors.New("fence: keeper stays: " + msg)
	}
	return nil
}

// Close closes the connection; a running keeper keeps its deadline.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
}

func (c *Client) drop() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.rd = nil, nil
	}
}

func (c *Client) ask(line string) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "%s\n", line); err != nil {
		return "", fmt.Errorf("fence: send to keeper: %w", err)
	}
	ans, err := c.rd.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("fence: keeper's answer: %w", err)
	}
	return strings.TrimSpace(ans), nil
}

func (c *Client) connect() error {
	conn, err := net.DialTimeout("unix", c.cfg.Socket, time.Second)
	if err != nil {
		return fmt.Errorf("fence: no keeper on %s: %w", c.cfg.Socket, err)
	}
	c.conn, c.rd = conn, bufio.NewReaderSize(conn, 512)
	return nil
}

// connectOrStart connects to the keeper, starting one armed with until
// when none answers, and waits (bounded) for it to listen.
func (c *Client) connectOrStart(until time.Time) error {
	if c.connect() == nil {
		return nil
	}
	if err := c.start(until); err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := c.connect()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fence: the keeper did not listen within 3 s (see %s; a test binary must call fence.RunKeeperIfAsked in TestMain): %w", c.cfg.LogFile, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start launches a keeper detached from this process: through /bin/sh,
// which backgrounds it and exits, so the keeper belongs to init rather
// than to the daemon (it must outlive a killed daemon, and the daemon
// need not reap it), in a session of its own (no terminal's signals).
func (c *Client) start(until time.Time) error {
	if c.cfg.Prepare != nil {
		if err := c.cfg.Prepare(); err != nil {
			return fmt.Errorf("fence: prepare the keeper's directory: %w", err)
		}
	}
	exe := c.cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("fence: find this program to start the keeper: %w", err)
		}
	}
	kc := KeeperConfig{DataDir: c.cfg.DataDir, Socket: c.cfg.Socket, Until: bootOf(until), Watchdog: c.cfg.Watchdog}
	spec, err := json.Marshal(keeperSpec{Config: kc, LogFile: c.cfg.LogFile})
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", "-c", `"$0" "$@" </dev/null >/dev/null 2>&1 &`, exe, describe(c.cfg.DataDir))
	cmd.Env = append(os.Environ(), envKeeper+"="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fence: start the keeper (%s): %w: %s", exe, err, strings.TrimSpace(string(out)))
	}
	c.log.Info("fence keeper started", "socket", c.cfg.Socket, "log", c.cfg.LogFile)
	return nil
}
