package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osUser is a resolved OS account.
type osUser struct {
	name     string
	uid, gid uint32
	home     string
}

func lookupOSUser(name string) (osUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return osUser{}, fmt.Errorf("replication: OS user %q does not exist: create it (useradd --system %s) or set postgresql.os_user: %w", name, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return osUser{}, fmt.Errorf("replication: OS user %q has a non-numeric uid/gid %s/%s", name, u.Uid, u.Gid)
	}
	return osUser{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}, nil
}

// checkCanRunAs reports whether this process can run programs as u: it
// must be root (and switch user) or be u already.
func checkCanRunAs(u osUser) error {
	euid := os.Geteuid()
	if euid == 0 {
		if u.uid == 0 {
			return fmt.Errorf("replication: os_user %q is root, and Postgres refuses to run as root: set postgresql.os_user to postgres", u.name)
		}
		return nil
	}
	if uint32(euid) != u.uid {
		return fmt.Errorf("replication: running as uid %d, which cannot run Postgres as os_user %q (uid %d): run pgha as root or as %s",
			euid, u.name, u.uid, u.name)
	}
	return nil
}

// Command returns a command that runs path with args as the OS user
// osUser (switching credentials when this process is root), in its own
// process group, with a clean environment (PATH, HOME, LANG=C.UTF-8,
// LC_MESSAGES=C) and working directory "/". When ctx ends the whole
// process group is killed, and Wait gives up on inherited pipes 5 s later,
// so a stuck child never hangs the caller. Append to cmd.Env to pass more
// variables (PGPASSWORD, PGCONNECT_TIMEOUT).
func Command(ctx context.Context, osUserName, path string, args ...string) (*exec.Cmd, error) {
	u, err := lookupOSUser(osUserName)
	if err != nil {
		return nil, err
	}
	if err := checkCanRunAs(u); err != nil {
		return nil, err
	}
	return commandAs(ctx, u, path, args...), nil
}

func commandAs(ctx context.Context, u osUser, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	attr := &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 && u.uid != 0 {
		attr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, NoSetGroups: false, Groups: []uint32{u.gid}}
	}
	cmd.SysProcAttr = attr
	home := u.home
	if home == "" {
		home = "/"
	}
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"USER=" + u.name,
		"LANG=C.UTF-8",
		"LC_MESSAGES=C",
	}
	cmd.Dir = "/"
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// Negative pid: the whole process group the child leads.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs a prepared command and returns its stdout. On failure the
// error names what was being done and carries the trimmed stderr (and
// stdout when stderr is empty).
func run(ctx context.Context, cmd *exec.Cmd, what string) (string, error) {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (stopped: %w)", err, context.Cause(ctx))
	}
	if err != nil {
		return stdout.String(), commandError(what, err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

func commandError(what string, err error, stderr, stdout string) error {
	msg := strings.TrimSpace(stderr)
	if msg == "" {
		msg = strings.TrimSpace(stdout)
	}
	msg = lastLines(msg, 15)
	if msg == "" {
		return fmt.Errorf("replication: %s: %w", what, err)
	}
	return fmt.Errorf("replication: %s: %s (%w)", what, msg, err)
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
