package faults

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one long-running process the harness started inside a host's
// namespace (an etcd member or a pgha daemon), with its output appended
// to a log file. Start may be called again after the process died.
type proc struct {
	host    *Host
	name    string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs the process unless it is running. A marker line goes to the
// log first, so a reader sees each life of the process.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return nil
		}
	}
	lf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "=== faults: starting %s at %s\n", p.name, time.Now().Format(time.StampMilli))
	cmd := p.host.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so a signal meant for the test binary's
	// group never reaches it; SIGKILL when the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s in %s: %w", p.name, p.host.NS, err)
	}
	done := make(chan struct{})
	go func() { // reaps the process; ends when it exits
		_ = cmd.Wait()
		lf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// pid returns the running process's pid, or 0.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// running reports whether the process is alive.
func (p *proc) running() bool { return p.pid() != 0 }

// signal sends sig to the process alone (not its group).
func (p *proc) signal(sig syscall.Signal) error {
	pid := p.pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", p.name)
	}
	return syscall.Kill(pid, sig)
}

// kill sends SIGKILL and waits (10 s at most) until it was reaped.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	return p.wait(done, 10*time.Second)
}

// waitExit waits for the process to exit on its own (after a KillAll of
// its namespace).
func (p *proc) waitExit(timeout time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	return p.wait(done, timeout)
}

func (p *proc) wait(done chan struct{}, timeout time.Duration) error {
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s", p.name, timeout)
	}
}
