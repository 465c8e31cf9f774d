package replication

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/config"
)

const cloneSuffix = ".pgha-clone-"

// CloneFrom copies primary's data directory with pg_basebackup (-X
// stream, fast checkpoint) into the absent or empty data directory, as
// the replication role, and configures the copy as a replica of primary
// (standby.signal, primary_conninfo). It does not start the server.
// Progress goes to the log. The copy lands in a sibling temporary
// directory that is renamed into place only when complete: a failed or
// interrupted (ctx cancelled) copy leaves nothing behind.
func (in *Instance) CloneFrom(ctx context.Context, primary Primary) error {
	dir := in.cfg.DataDir
	if in.IsInitialized() {
		return fmt.Errorf("%w: %s: clone only into an empty data directory", ErrAlreadyInitialized, dir)
	}
	if err := in.checkOwner(dir); err != nil {
		return err
	}
	if err := checkEmpty(dir); err != nil {
		return err
	}
	in.removeStaleClones()
	if err := in.prepareRunDir(); err != nil {
		return err
	}
	tmp := dir + cloneSuffix + randomHex()
	if err := in.mkdirOwned(tmp, 0o700); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	repl := in.cfg.Authentication.Replication
	args := []string{"-D", tmp, "-X", "stream", "-c", "fast", "-h", primary.Host, "-p", strconv.Itoa(primary.Port),
		"-U", repl.Username, "-w", "--progress", "--verbose"}
	cmd := commandAs(ctx, in.user, in.bin("pg_basebackup"), args...)
	cmd.Env = append(cmd.Env, "PGPASSWORD="+repl.Password, "PGCONNECT_TIMEOUT=10", "PGAPPNAME=pgha_clone")
	what := "pg_basebackup from " + primary.Addr()
	start := time.Now()
	in.log.Info("cloning from primary", "primary", primary.Addr())
	if err := in.runWithProgress(ctx, cmd, what); err != nil {
		return err
	}
	if err := in.configureStandby(tmp, primary); err != nil {
		return err
	}
	// The data directory may exist, empty (checked above): replace it.
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replication: clone: replace empty %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("replication: clone: move %s into place: %w", tmp, err)
	}
	ok = true
	in.log.Info("clone complete", "primary", primary.Addr(), "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// removeStaleClones deletes temporary clone directories left by a
// process that died mid-copy.
func (in *Instance) removeStaleClones() {
	matches, _ := filepath.Glob(in.cfg.DataDir + cloneSuffix + "*")
	wiped, _ := filepath.Glob(in.cfg.DataDir + ".pgha-wipe-*")
	matches = append(matches, wiped...)
	for _, m := range matches {
		in.log.Warn("removing an interrupted clone", "path", m)
		_ = os.RemoveAll(m)
	}
}

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runWithProgress runs a command whose stderr reports progress in lines
// ended by \r or \n; progress is logged at most every 2 s and the last
// lines go into the error.
func (in *Instance) runWithProgress(ctx context.Context, cmd interface {
	StderrPipe() (io.ReadCloser, error)
	Start() error
	Wait() error
}, what string) error {
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("replication: %s: %w", what, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("replication: %s: %w", what, err)
	}
	var (
		mu    sync.Mutex
		lines []string
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 4096), 64<<10)
		sc.Split(scanCRLF)
		var last time.Time
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			if l == "" {
				continue
			}
			progress := strings.Contains(l, " kB (")
			if !progress || time.Since(last) > 2*time.Second {
				in.log.Info(what, "output", l)
				if progress {
					last = time.Now()
				}
			}
			mu.Lock()
			if !progress {
				lines = append(lines, l)
				if len(lines) > 20 {
					lines = lines[1:]
				}
			}
			mu.Unlock()
		}
	}()
	wg.Wait()
	err = cmd.Wait()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (stopped: %w)", err, context.Cause(ctx))
	}
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		return commandError(what, err, strings.Join(lines, "\n"), "")
	}
	return nil
}

func scanCRLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Rewind synchronises this stopped former primary with primary's
// timeline using pg_rewind --source-server as the rewind role, then
// configures it as a replica of primary (standby.signal,
// primary_conninfo). It does not start the server. pg_rewind needs a
// clean shutdown: a running server is stopped (fast), and one that
// crashed is first taken through crash recovery in single-user mode, as
// Patroni does. A timeline that never diverged is left as is.
func (in *Instance) Rewind(ctx context.Context, primary Primary) error {
	dir := in.cfg.DataDir
	if !in.IsInitialized() {
		return fmt.Errorf("%w: cannot rewind %s", ErrNotInitialized, dir)
	}
	if err := in.Stop(ctx, StopFast); err != nil {
		return err
	}
	if err := in.ensureCleanShutdown(ctx); err != nil {
		return err
	}
	rw := in.cfg.Authentication.Rewind
	if rw.Username == "" {
		rw = in.cfg.Authentication.Superuser
	}
	src := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres connect_timeout=10", quoteConn(primary.Host), primary.Port, quoteConn(rw.Username))
	rctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	in.checkpointSource(rctx, primary, rw)
	cmd := commandAs(rctx, in.user, in.bin("pg_rewind"), "--target-pgdata="+dir, "--source-server="+src, "--progress")
	cmd.Env = append(cmd.Env, "PGPASSWORD="+rw.Password)
	in.log.Info("rewinding to the primary's timeline", "primary", primary.Addr())
	if err := in.runWithProgress(rctx, cmd, "pg_rewind from "+primary.Addr()); err != nil {
		return err
	}
	// pg_rewind copied the source's configuration files: restore ours.
	if err := in.configureStandby(dir, primary); err != nil {
		return err
	}
	in.log.Info("rewind complete", "primary", primary.Addr())
	return nil
}

// CheckSource connects to primary as pg_basebackup does (a replication
// connection as the replication user) and asks IDENTIFY_SYSTEM. A source
// that cannot be reached fails here, so that a re-clone or a rewind
// stops and removes nothing while it has nothing to copy from.
func (in *Instance) CheckSource(ctx context.Context, primary Primary) error {
	repl := in.cfg.Authentication.Replication
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=replication sslmode=prefer connect_timeout=5 application_name=pgha_check",
		quoteConn(primary.Host), primary.Port, quoteConn(repl.Username)))
	if err != nil {
		return fmt.Errorf("replication: check source %s: %w", primary.Addr(), err)
	}
	cfg.Password = repl.Password
	cfg.RuntimeParams["replication"] = "true"
	c, err := pgconn.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("replication: source %s cannot be reached: %w", primary.Addr(), err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(cctx, "IDENTIFY_SYSTEM").ReadAll(); err != nil {
		return fmt.Errorf("replication: source %s: IDENTIFY_SYSTEM: %w", primary.Addr(), err)
	}
	return nil
}

// checkpointSource asks the source for a CHECKPOINT so its control file
// shows the timeline a fresh promotion created; otherwise pg_rewind
// would see "same timeline" and do nothing. Failure is only logged:
// pg_rewind itself reports an unreachable source.
func (in *Instance) checkpointSource(ctx context.Context, primary Primary, rw config.Credentials) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(rw.Username, rw.Password), Host: primary.Addr(),
		Path: "/postgres", RawQuery: "sslmode=prefer&connect_timeout=10&application_name=pgha_rewind"}
	c, err := pgx.Connect(cctx, u.String())
	if err == nil {
		_, err = c.Exec(cctx, "CHECKPOINT")
		_ = c.Close(cctx)
	}
	if err != nil {
		in.log.Warn("checkpoint on the rewind source failed", "primary", primary.Addr(), "err", err)
	}
}

// ensureCleanShutdown runs crash recovery in single-user mode when the
// control file says the server did not shut down cleanly.
func (in *Instance) ensureCleanShutdown(ctx context.Context) error {
	cd, err := in.ControlData(ctx)
	if err != nil {
		return err
	}
	state := cd["Database cluster state"]
	if state == "shut down" || state == "shut down in recovery" {
		return nil
	}
	if err := in.clearStaleLock(ctx); err != nil {
		return err
	}
	// Single-user mode refuses standby mode; Rewind writes it back.
	if err := in.setStandby(in.cfg.DataDir, false); err != nil {
		return err
	}
	in.log.Warn("postgres did not shut down cleanly: running crash recovery in single-user mode", "state", state)
	sctx, cancel := context.WithTimeout(ctx, in.timeout+5*time.Second)
	defer cancel()
	cmd := commandAs(sctx, in.user, in.bin("postgres"), "--single", "-D", in.cfg.DataDir,
		"-c", "archive_mode=off", "-c", "hot_standby=off", "postgres")
	cmd.Stdin = strings.NewReader("")
	if _, err := run(sctx, cmd, "crash recovery in single-user mode"); err != nil {
		return err
	}
	cd, err = in.ControlData(ctx)
	if err != nil {
		return err
	}
	if s := cd["Database cluster state"]; s != "shut down" && s != "shut down in recovery" {
		return fmt.Errorf("replication: after single-user crash recovery the cluster state is %q, not shut down", s)
	}
	return nil
}
