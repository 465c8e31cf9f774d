package callback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgha/pgha/config"
)

// Actions, as Patroni names them (the first argument of a script).
const (
	OnStart      = "on_start"
	OnStop       = "on_stop"
	OnRestart    = "on_restart"
	OnReload     = "on_reload"
	OnRoleChange = "on_role_change"
)

// Event is one thing that happened to the local Postgres.
type Event struct {
	Action string
	// Role is the role after the event: primary, replica, demoted...
	Role string
}

// Runner runs the scripts of config.Callbacks.
type Runner struct {
	mu    sync.Mutex
	cfg   config.Callbacks
	scope string
	log   *slog.Logger
	queue chan Event
}

// New returns a Runner for scope; Run starts it.
func New(cfg config.Callbacks, scope string, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout.D() <= 0 {
		cfg.Timeout = config.Duration(config.DefaultCallbackTimeout)
	}
	return &Runner{cfg: cfg, scope: scope, log: log.With("component", "callbacks"), queue: make(chan Event, 16)}
}

// Fire queues ev without blocking; with the queue full, the oldest
// waiting event is dropped (the newest state matters most).
func (r *Runner) Fire(ev Event) {
	if r.script(ev.Action) == "" {
		return
	}
	for {
		select {
		case r.queue <- ev:
			return
		default:
		}
		select {
		case old := <-r.queue:
			r.log.Warn("callback dropped: too many events waiting", "action", old.Action, "role", old.Role)
		default:
		}
	}
}

func (r *Runner) timeout() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.Timeout.D()
}

// SetConfig replaces the scripts (a config reload); the timeout stays.
func (r *Runner) SetConfig(cfg config.Callbacks) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg.Timeout = r.cfg.Timeout
	r.cfg = cfg
}

func (r *Runner) script(action string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch action {
	case OnStart:
		return r.cfg.OnStart
	case OnStop:
		return r.cfg.OnStop
	case OnRestart:
		return r.cfg.OnRestart
	case OnReload:
		return r.cfg.OnReload
	case OnRoleChange:
		return r.cfg.OnRoleChange
	}
	return ""
}

// Run runs queued events one at a time until ctx ends; a new event ends a
// script still running (Patroni's behaviour: only the latest state's
// script needs to finish).
func (r *Runner) Run(ctx context.Context) error {
	var next *Event
	for {
		if next == nil {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-r.queue:
				next = &ev
			}
		}
		ev := *next
		next = nil
		timeout := r.timeout()
		runCtx, cancel := context.WithTimeout(ctx, timeout)
		done := make(chan error, 1)
		var out bytes.Buffer
		cmd, err := r.command(runCtx, ev, &out)
		if err != nil {
			cancel()
			r.log.Error("callback not run", "action", ev.Action, "err", err)
			continue
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			cancel()
			r.log.Error("callback did not start", "action", ev.Action, "script", cmd.Path, "err", err)
			continue
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case ev2 := <-r.queue:
			next = &ev2
			r.log.Info("callback superseded by a newer event: killing it", "action", ev.Action, "next", ev2.Action)
			cancel()
			err = <-done
		case <-ctx.Done():
			cancel()
			<-done
			return nil
		}
		cancel()
		took := time.Since(start).Round(time.Millisecond).String()
		switch {
		case errors.Is(runCtx.Err(), context.DeadlineExceeded):
			r.log.Error("callback killed after its timeout", "action", ev.Action, "role", ev.Role, "timeout", timeout.String(), "output", tail(out.String()))
		case err != nil && next == nil:
			r.log.Error("callback failed", "action", ev.Action, "role", ev.Role, "err", err, "took", took, "output", tail(out.String()))
		case err == nil:
			r.log.Info("callback ran", "action", ev.Action, "role", ev.Role, "took", took)
		}
	}
}

// command builds `script... action role scope`, in its own process group
// so that a kill reaches what the script started.
func (r *Runner) command(ctx context.Context, ev Event, out *bytes.Buffer) (*exec.Cmd, error) {
	argv, err := Split(r.script(ev.Action))
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("callback: %s: empty command", ev.Action)
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], ev.Action, ev.Role, r.scope)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, nil
}

// Split splits a command line as a POSIX shell would split words: blanks
// separate, single quotes keep everything, double quotes keep everything
// but backslash escapes, a backslash escapes the next character. Patroni
// splits its callback commands the same way (shlex).
func Split(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0:
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("callback: %q ends with a backslash", s)
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("callback: unterminated %c quote in %q", quote, s)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
