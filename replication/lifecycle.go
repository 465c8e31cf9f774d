package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Init creates a new cluster in the (absent or empty) data directory:
// initdb as os_user with data checksums, scram-sha-256 and the
// bootstrap.initdb options; pgha's parameters and pg_hba; then it starts
// the server and creates the replication role (REPLICATION LOGIN) and the
// rewind role with the grants pg_rewind needs. The server is left
// running as a primary.
func (in *Instance) Init(ctx context.Context) error {
	dir := in.cfg.DataDir
	if in.IsInitialized() {
		return fmt.Errorf("%w: %s (remove it to start over, or just Start it)", ErrAlreadyInitialized, dir)
	}
	if err := in.checkOwner(dir); err != nil {
		return err
	}
	if err := checkEmpty(dir); err != nil {
		return err
	}
	extra, err := initdbArgs(in.initdb)
	if err != nil {
		return err
	}
	if err := in.prepareDirs(dir); err != nil {
		return err
	}
	su := in.cfg.Authentication.Superuser
	pwfile := filepath.Join(in.RunDir(), "initdb.pw")
	if err := in.writeFile(pwfile, []byte(su.Password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)

	args := append([]string{"-D", dir, "--data-checksums", "--username=" + su.Username, "--pwfile=" + pwfile,
		"--auth-local=peer", "--auth-host=scram-sha-256"}, extra...)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	in.log.Info("initdb: creating a new cluster", "args", strings.Join(extra, " "))
	if _, err := run(ictx, commandAs(ictx, in.user, in.bin("initdb"), args...), "initdb "+dir); err != nil {
		// initdb removes what it created on failure; make sure.
		_ = clearDir(dir)
		return err
	}
	if err := in.writeConfig(dir, nil); err != nil {
		return err
	}
	if err := in.Start(ctx); err != nil {
		return err
	}
	if err := in.createRoles(ctx); err != nil {
		return err
	}
	in.log.Info("initdb: cluster created and running", "port", in.port)
	return nil
}

func (in *Instance) createRoles(ctx context.Context) error {
	a := in.cfg.Authentication
	return in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		role := func(name, password, attrs string) error {
			if name == "" || name == a.Superuser.Username {
				return nil
			}
			id := pgx.Identifier{name}.Sanitize()
			var exists bool
			if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
				return fmt.Errorf("replication: look up role %s: %w", name, err)
			}
			verb := "CREATE"
			if exists {
				verb = "ALTER"
			}
			sql := fmt.Sprintf("%s ROLE %s WITH %s", verb, id, attrs)
			if password != "" {
				sql += " PASSWORD " + quoteLiteral(password)
			}
			if _, err := c.Exec(ctx, sql); err != nil {
				return fmt.Errorf("replication: %s role %s: %w", strings.ToLower(verb), name, err)
			}
			return nil
		}
		if err := role(a.Replication.Username, a.Replication.Password, "REPLICATION LOGIN"); err != nil {
			return err
		}
		if err := role(a.Rewind.Username, a.Rewind.Password, "LOGIN"); err != nil {
			return err
		}
		if a.Rewind.Username != "" && a.Rewind.Username != a.Superuser.Username {
			id := pgx.Identifier{a.Rewind.Username}.Sanitize()
			for _, fn := range []string{
				"pg_catalog.pg_ls_dir(text, boolean, boolean)",
				"pg_catalog.pg_stat_file(text, boolean)",
				"pg_catalog.pg_read_binary_file(text)",
				"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
			} {
				if _, err := c.Exec(ctx, "GRANT EXECUTE ON FUNCTION "+fn+" TO "+id); err != nil {
					return fmt.Errorf("replication: grant %s to rewind role %s: %w", fn, a.Rewind.Username, err)
				}
			}
			// CHECKPOINT on a just-promoted source before pg_rewind.
			if _, err := c.Exec(ctx, "GRANT pg_checkpoint TO "+id); err != nil {
				return fmt.Errorf("replication: grant pg_checkpoint to rewind role %s: %w", a.Rewind.Username, err)
			}
		}
		return nil
	})
}

// prepareDirs creates the data directory (0700) and the run directory
// (log and socket, 0755), both owned by os_user, plus the log file.
func (in *Instance) prepareDirs(dataDir string) error {
	if err := in.mkdirOwned(dataDir, 0o700); err != nil {
		return err
	}
	return in.prepareRunDir()
}

func (in *Instance) prepareRunDir() error {
	if err := in.mkdirOwned(in.RunDir(), 0o755); err != nil {
		return err
	}
	// The run directory belongs to os_user: never follow a link there.
	f, err := os.OpenFile(in.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return fmt.Errorf("replication: open server log: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("replication: server log %s is not a regular file: move it away", in.LogPath())
	}
	if err := in.fchown(f); err != nil {
		return fmt.Errorf("replication: server log %s: %w", in.LogPath(), err)
	}
	return nil
}

// checkEmpty fails when dir exists and has entries.
func checkEmpty(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replication: read data directory %s: %w", dir, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: %s is not empty (it has %s, but no PG_VERSION): move it away or empty it",
			ErrAlreadyInitialized, dir, ents[0].Name())
	}
	return nil
}

// clearDir removes the contents of dir, keeping dir.
func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Start starts the server (as a replica when standby.signal is present)
// and waits until it accepts connections, bounded by pg_ctl_timeout and
// ctx. It is a no-op when the server already runs. Before starting it
// checks that the data directory is initialized and owned by os_user
// and that nobody else holds the port; a failed start returns the last
// lines of the server log.
func (in *Instance) Start(ctx context.Context) error {
	dir := in.cfg.DataDir
	if err := in.checkOwner(dir); err != nil {
		return err
	}
	if !in.IsInitialized() {
		return fmt.Errorf("%w: %s has no PG_VERSION: run Init or CloneFrom first", ErrNotInitialized, dir)
	}
	if in.IsRunning() {
		return nil
	}
	if err := in.checkPortFree(); err != nil {
		return err
	}
	if err := in.prepareRunDir(); err != nil {
		return err
	}
	// The configuration files follow the node file and the cluster's
	// parameters at every start (replication settings kept).
	if err := in.writeConfigKeep(dir, nil, true); err != nil {
		return err
	}
	if err := in.clearStaleLock(ctx); err != nil {
		return err
	}
	offset := fileSize(in.LogPath())
	sctx, cancel := context.WithTimeout(ctx, in.timeout+5*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(in.timeout.Seconds()))
	in.log.Info("starting postgres", "port", in.port, "standby", in.IsStandby())
	cmd := commandAs(sctx, in.user, in.bin("pg_ctl"), "start", "-D", dir, "-l", in.LogPath(), "-w", "-t", secs, "-s")
	if _, err := run(sctx, cmd, fmt.Sprintf("start postgres on port %d", in.port)); err != nil {
		tail := tailFrom(in.LogPath(), offset, 20)
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", ErrPortInUse, err)
		}
		if in.IsRunning() && sctx.Err() != nil {
			_ = in.Kill()
		}
		if tail != "" {
			return fmt.Errorf("%w\nlast lines of %s:\n%s", err, in.LogPath(), tail)
		}
		return err
	}
	return nil
}

// clearStaleLock removes a postmaster.pid left by a killed postmaster.
// Postgres would refuse to start if the pid in it now belongs to some
// other live process (another cluster's backend, in tests). It is removed
// only once no process works in the data directory any more (orphaned
// backends of the dead postmaster exit within moments).
func (in *Instance) clearStaleLock(ctx context.Context) error {
	lock := filepath.Join(in.cfg.DataDir, "postmaster.pid")
	if _, err := os.Stat(lock); err != nil {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	// The dead postmaster may still be a zombie (its parent, often init,
	// reaps it late); Postgres would take its socket lock for a live one.
	var dead []int
	for _, f := range []string{lock, filepath.Join(in.RunDir(), fmt.Sprintf(".s.PGSQL.%d.lock", in.port))} {
		if b, err := readDataFile(f); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid > 0 {
				dead = append(dead, pid)
			}
		}
	}
	for {
		pids := in.processesInDataDir()
		for _, pid := range dead {
			if isZombie(pid) {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication: processes %v of a previous postmaster still run in %s: stop them first", pids, in.cfg.DataDir)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replication: waiting for old postgres processes %v to exit: %w", pids, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	in.log.Warn("removing stale postmaster.pid left by a postmaster that died")
	if err := os.Remove(lock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replication: remove stale %s: %w", lock, err)
	}
	return nil
}

// processesInDataDir lists processes whose working directory is the data
// directory (every postgres process chdirs there).
func (in *Instance) processesInDataDir() []int { return processesIn(in.cfg.DataDir) }

// checkPortFree fails with ErrPortInUse when the port is taken.
func (in *Instance) checkPortFree() error {
	host := in.host
	if in.listen == "*" {
		host = ""
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(in.port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: port %d (postgresql.listen %s) is taken by another process: stop it (ss -ltnp 'sport = :%d' shows which) or set postgresql.listen to a free port",
				ErrPortInUse, in.port, in.cfg.Listen, in.port)
		}
		return fmt.Errorf("replication: cannot listen on postgresql.listen %s: %w", in.cfg.Listen, err)
	}
	return l.Close()
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// tailFrom returns up to n last lines written to path after offset.
func tailFrom(path string, offset int64, n int) string {
	// The log lives in os_user's run directory: no links, no FIFOs.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	size := fileSize(path)
	if size-offset > 64<<10 {
		offset = size - 64<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	return lastLines(strings.TrimSpace(string(b)), n)
}

// LogTail returns the last n lines of the server log.
func (in *Instance) LogTail(n int) string { return tailFrom(in.LogPath(), 0, n) }

// Stop stops the server with mode and waits for it to exit, bounded by
// pg_ctl_timeout and ctx. It is a no-op when the server is not running.
// Like pg_ctl stop it signals the postmaster (SIGTERM smart, SIGINT fast,
// SIGQUIT immediate) and waits for it to go, but it looks every 10 ms
// rather than every 100 ms: a planned switchover waits on this.
func (in *Instance) Stop(ctx context.Context, mode StopMode) error {
	var sig syscall.Signal
	switch mode {
	case StopSmart:
		sig = syscall.SIGTERM
	case StopFast, "":
		mode, sig = StopFast, syscall.SIGINT
	case StopImmediate:
		sig = syscall.SIGQUIT
	default:
		return fmt.Errorf("replication: stop mode %q is not smart, fast or immediate", mode)
	}
	pid := in.postmasterPID()
	if pid == 0 {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	in.log.Info("stopping postgres", "mode", string(mode))
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("replication: stop postgres (%s): signal postmaster %d: %w", mode, pid, err)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT) // a stopped (SIGSTOP) postmaster acts on it too
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for in.postmasterPID() != 0 {
		select {
		case <-sctx.Done():
			return fmt.Errorf("replication: stop postgres (%s): postmaster %d still running: %w; server log:\n%s",
				mode, pid, context.Cause(sctx), in.LogTail(10))
		case <-tick.C:
		}
	}
	return nil
}

// Restart stops the server (fast) and starts it again.
func (in *Instance) Restart(ctx context.Context) error {
	if err := in.Stop(ctx, StopFast); err != nil {
		return err
	}
	return in.Start(ctx)
}

// Reload makes the server re-read its configuration files (SIGHUP).
func (in *Instance) Reload(ctx context.Context) error {
	if !in.IsRunning() {
		return fmt.Errorf("%w: cannot reload %s", ErrNotRunning, in.cfg.DataDir)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := run(rctx, commandAs(rctx, in.user, in.bin("pg_ctl"), "reload", "-D", in.cfg.DataDir, "-s"), "reload postgres")
	return err
}

// Promote turns a running replica into a primary and returns once it
// accepts writes and is ready for pg_rewind against it (PromoteFast, then
// FinishPromote), bounded by pg_ctl_timeout and ctx. Promoting a primary
// is a no-op.
func (in *Instance) Promote(ctx context.Context) error {
	if err := in.PromoteFast(ctx); err != nil {
		return err
	}
	return in.FinishPromote(ctx)
}

// PromoteFast asks a running replica to promote (pg_promote without
// waiting) and returns as soon as pg_is_in_recovery() is false: the server
// takes writes. It looks every 10 ms (pg_ctl promote -w looks every
// 100 ms). Call FinishPromote next.
func (in *Instance) PromoteFast(ctx context.Context) error {
	if !in.IsRunning() {
		return fmt.Errorf("%w: cannot promote %s", ErrNotRunning, in.cfg.DataDir)
	}
	pctx, cancel := context.WithTimeout(ctx, in.timeout+5*time.Second)
	defer cancel()
	return in.withConn(pctx, func(ctx context.Context, c *pgx.Conn) error {
		var inRecovery bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return fmt.Errorf("replication: promote: %w", err)
		}
		if !inRecovery {
			return nil
		}
		in.log.Info("promoting postgres")
		var asked bool
		if err := c.QueryRow(ctx, "SELECT pg_promote(false)").Scan(&asked); err != nil || !asked {
			return fmt.Errorf("replication: promote: pg_promote did not signal the startup process (%v)", err)
		}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
				return fmt.Errorf("replication: promote: %w", err)
			}
			if !inRecovery {
				in.log.Info("postgres promoted: accepting writes")
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("replication: promote: still in recovery after %s: %w", in.timeout, context.Cause(ctx))
			case <-tick.C:
			}
		}
	})
}

// FinishPromote completes a promotion once the server takes writes: a
// checkpoint writes the new timeline into the control file (pg_rewind of
// the old primary reads it there, as with Patroni), and the configuration
// loses primary_conninfo (Postgres removed standby.signal itself).
func (in *Instance) FinishPromote(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, in.timeout+5*time.Second)
	defer cancel()
	if err := in.Checkpoint(pctx); err != nil {
		return fmt.Errorf("replication: checkpoint after promote: %w", err)
	}
	if err := in.writeConfig(in.cfg.DataDir, nil); err != nil {
		return err
	}
	return in.Reload(pctx)
}

// Checkpoint runs CHECKPOINT on the running server (before a planned
// stop it makes the shutdown checkpoint short).
func (in *Instance) Checkpoint(ctx context.Context) error {
	return in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CHECKPOINT")
		return err
	})
}

// Demote turns this node into a replica of primary: stop (fast),
// standby.signal, primary_conninfo, start. A zero Primary (no Host) makes
// a standby without primary_conninfo: read-only, waiting for Follow. A
// former primary whose timeline diverged needs Rewind (or Wipe and
// CloneFrom) first; pg_rewind itself finds out whether it diverged and
// does nothing when it did not.
func (in *Instance) Demote(ctx context.Context, primary Primary) error {
	if !in.IsInitialized() {
		return fmt.Errorf("%w: cannot demote %s", ErrNotInitialized, in.cfg.DataDir)
	}
	in.log.Info("demoting postgres", "primary", primary.Host+":"+strconv.Itoa(primary.Port))
	in.confMu.Lock()
	in.sync = nil // a standby has no synchronous standbys of its own
	in.confMu.Unlock()
	if err := in.Stop(ctx, StopFast); err != nil {
		return err
	}
	if err := in.configureStandby(in.cfg.DataDir, primary); err != nil {
		return err
	}
	return in.Start(ctx)
}

func (in *Instance) configureStandby(dir string, primary Primary) error {
	if err := in.writeConfig(dir, &primary); err != nil {
		return err
	}
	return in.setStandby(dir, true)
}

// Follow points a replica at a new primary without a restart: rewrite
// primary_conninfo and reload (Postgres 13+ re-reads it and restarts only
// its WAL receiver). A stopped replica is just reconfigured.
func (in *Instance) Follow(ctx context.Context, primary Primary) error {
	if !in.IsStandby() {
		return fmt.Errorf("replication: follow %s: %s is not a replica (no standby.signal): use Demote", primary.Addr(), in.cfg.DataDir)
	}
	in.log.Info("following new primary", "primary", primary.Addr())
	if err := in.writeConfig(in.cfg.DataDir, &primary); err != nil {
		return err
	}
	if !in.IsRunning() {
		return nil
	}
	return in.Reload(ctx)
}
