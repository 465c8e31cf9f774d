package replication

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/config"
)

// Sentinel errors callers branch on (test with errors.Is).
var (
	// ErrNotInitialized: the data directory holds no cluster (no PG_VERSION).
	ErrNotInitialized = errors.New("replication: data directory is not initialized")
	// ErrAlreadyInitialized: Init or CloneFrom found a cluster already there.
	ErrAlreadyInitialized = errors.New("replication: data directory already holds a cluster")
	// ErrNotRunning: the operation needs a running server.
	ErrNotRunning = errors.New("replication: postgres is not running")
	// ErrPortInUse: another process listens on the configured port.
	ErrPortInUse = errors.New("replication: port already in use")
	// ErrWrongOwner: the data directory belongs to another OS user.
	ErrWrongOwner = errors.New("replication: data directory owned by another user")
)

// Primary names the server a replica streams from, clones from or
// rewinds against. Credentials come from the Instance's configuration.
type Primary struct {
	Host string
	Port int
	// Slot, when set, is the physical replication slot on the primary that
	// this replica streams through (primary_slot_name).
	Slot string
}

// Addr returns host:port.
func (p Primary) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// StopMode is pg_ctl's shutdown mode.
type StopMode string

// Shutdown modes, as pg_ctl names them.
const (
	StopSmart     StopMode = "smart"
	StopFast      StopMode = "fast"
	StopImmediate StopMode = "immediate"
)

// Instance controls one local Postgres. It is safe for use by one
// goroutine at a time (the leader loop); Status may run concurrently.
type Instance struct {
	cfg     config.PostgreSQL
	initdb  []any
	log     *slog.Logger
	user    osUser
	host    string // address pgha connects to (loopback when listening on a wildcard)
	port    int
	listen  string // listen_addresses value
	timeout time.Duration
	// localPasswords adds "local all all md5" to pg_hba.conf.
	localPasswords atomic.Bool

	// local are the node file's postgresql.parameters, names in lower
	// case (as Postgres folds them), values as written.
	local map[string]string

	// confMu serializes writes of the configuration files and guards:
	// clusterSrc, the parameters of etcd's config key as last given
	// (SetClusterParameters); cluster, the ones pgha writes (lower-case
	// names, neither managed nor rejected); goodCluster, cluster as of
	// the last write that loaded (checkClusterParams); written,
	// clusterSrc as of the last write.
	confMu      sync.Mutex
	clusterSrc  map[string]any
	cluster     map[string]string
	goodCluster map[string]string
	written     map[string]any
	// rejected are cluster parameters Postgres refused or that cannot be
	// written, by the value refused; a new value is tried again.
	rejected map[string]string
	// appName is this node's application_name towards its primary
	// (SetApplicationName); sync is synchronous_standby_names' member
	// list (SetSyncStandby). Both under confMu.
	appName string
	sync    []string
	syncSet bool // SetSyncStandby was called
}

// SetApplicationName makes name (the member name) this node's
// application_name in its primary_conninfo, so that the primary's
// pg_stat_replication and synchronous_standby_names use member names.
func (in *Instance) SetApplicationName(name string) {
	in.confMu.Lock()
	in.appName = name
	in.confMu.Unlock()
}

// AllowLocalPasswords makes pg_hba.conf (written at the next start or
// reload) accept password logins of every role on the Unix socket, for
// the pooler's server connections (pooler.local_unix_socket).
func (in *Instance) AllowLocalPasswords() { in.localPasswords.Store(true) }

// SocketPath is the Unix socket Postgres listens on (in RunDir).
func (in *Instance) SocketPath() string {
	return filepath.Join(in.RunDir(), ".s.PGSQL."+strconv.Itoa(in.port))
}

// New checks the environment (Postgres programs in bin_dir, os_user exists
// and can be switched to, listen is host:port, a superuser password is
// set) and returns an Instance. initdb lists Patroni-style initdb options
// from bootstrap.initdb ("data-checksums", {"encoding": "UTF8"}); log
// receives progress and state changes (nil discards).
func New(cfg config.PostgreSQL, initdb []any, log *slog.Logger) (*Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.BinDir == "" {
		cfg.BinDir = config.DefaultBinDir
	}
	if err := config.CheckBinDir(cfg.BinDir); err != nil {
		return nil, fmt.Errorf("replication: postgresql.bin_dir: %w", err)
	}
	if cfg.DataDir == "" || !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("replication: postgresql.data_dir %q must be an absolute path", cfg.DataDir)
	}
	cfg.DataDir = filepath.Clean(cfg.DataDir)
	if cfg.OSUser == "" {
		cfg.OSUser = "postgres"
	}
	u, err := lookupOSUser(cfg.OSUser)
	if err != nil {
		return nil, err
	}
	if err := checkCanRunAs(u); err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("replication: postgresql.listen %q is not host:port: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("replication: postgresql.listen %q: port out of range 1-65535", cfg.Listen)
	}
	listen, connectHost := host, host
	switch host {
	case "", "*", "0.0.0.0":
		listen, connectHost = "*", "127.0.0.1"
	case "::":
		listen, connectHost = "*", "::1"
	}
	if cfg.Authentication.Superuser.Username == "" {
		cfg.Authentication.Superuser.Username = "postgres"
	}
	if cfg.Authentication.Superuser.Password == "" {
		return nil, fmt.Errorf("replication: postgresql.authentication.superuser.password is empty: set one (pgha logs in over TCP with scram-sha-256)")
	}
	local, err := localParameters(cfg.Parameters)
	if err != nil {
		return nil, err
	}
	timeout := cfg.PgCtlTimeout.D()
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	return &Instance{cfg: cfg, initdb: initdb, log: log.With("data_dir", cfg.DataDir), user: u,
		host: connectHost, port: port, listen: listen, timeout: timeout, local: local}, nil
}

// DataDir is the data directory.
func (in *Instance) DataDir() string { return in.cfg.DataDir }

// Port is the port Postgres listens on.
func (in *Instance) Port() int { return in.port }

// Host is the address pgha connects to locally.
func (in *Instance) Host() string { return in.host }

// Config returns the configuration the Instance was built from.
func (in *Instance) Config() config.PostgreSQL { return in.cfg }

// RunDir is <data_dir>.pgha: the server log and the Unix socket.
func (in *Instance) RunDir() string { return in.cfg.DataDir + ".pgha" }

// LogPath is the server log pg_ctl writes to.
func (in *Instance) LogPath() string { return filepath.Join(in.RunDir(), "postgresql.log") }

func (in *Instance) bin(name string) string { return filepath.Join(in.cfg.BinDir, name) }

// IsInitialized reports whether the data directory holds a cluster.
func (in *Instance) IsInitialized() bool {
	_, err := os.Stat(filepath.Join(in.cfg.DataDir, "PG_VERSION"))
	return err == nil
}

// ConnConfig returns a pgx configuration for the local server as the
// superuser, over TCP, with a 5 s connect timeout.
func (in *Instance) ConnConfig(dbname string) (*pgx.ConnConfig, error) {
	su := in.cfg.Authentication.Superuser
	u := url.URL{Scheme: "postgres", User: url.UserPassword(su.Username, su.Password),
		Host: net.JoinHostPort(in.host, strconv.Itoa(in.port)), Path: "/" + dbname,
		RawQuery: "sslmode=disable&connect_timeout=5&application_name=pgha"}
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("replication: connection settings: %w", err)
	}
	return cc, nil
}

// Conn opens a connection to the local server as the superuser. The
// caller closes it.
func (in *Instance) Conn(ctx context.Context) (*pgx.Conn, error) {
	cc, err := in.ConnConfig("postgres")
	if err != nil {
		return nil, err
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("replication: connect to local postgres at %s:%d: %w", in.host, in.port, err)
	}
	return c, nil
}

// withConn runs fn on a fresh superuser connection, bounded by 30 s
// unless ctx is shorter.
func (in *Instance) withConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := in.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_ = c.Close(cctx)
	}()
	return fn(ctx, c)
}

// postmasterPID returns the pid from postmaster.pid when that process
// is alive and is a postgres process, else 0.
func (in *Instance) postmasterPID() int { return PostmasterPID(in.cfg.DataDir) }

// isZombie reports whether pid has exited but was not reaped yet.
func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}

// IsRunning reports whether the postmaster of this data directory is alive.
func (in *Instance) IsRunning() bool { return in.postmasterPID() > 0 }

// Kill sends SIGKILL to the postmaster's process group (the postmaster
// and its children): a crash, for tests and last-resort cleanup.
func (in *Instance) Kill() error {
	pid := in.postmasterPID()
	if pid == 0 {
		return nil
	}
	in.log.Warn("killing postgres", "pid", pid)
	target := pid
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
		target = -pgid
	}
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("replication: kill postgres pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("replication: postgres pid %d still alive 5s after SIGKILL", pid)
}

// Wipe removes the data directory of a stopped server (after a failed
// rewind, before CloneFrom). The directory is first renamed aside, so an
// interrupted removal never leaves something that looks like a cluster.
func (in *Instance) Wipe(ctx context.Context) error {
	if in.IsRunning() {
		return fmt.Errorf("replication: wipe %s: postgres is running: stop it first", in.cfg.DataDir)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("replication: wipe %s: %w", in.cfg.DataDir, err)
	}
	trash := in.cfg.DataDir + ".pgha-wipe-" + randomHex()
	if err := os.Rename(in.cfg.DataDir, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("replication: wipe %s: %w", in.cfg.DataDir, err)
	}
	in.log.Warn("data directory removed", "moved_to", trash)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("replication: wipe %s: remove %s: %w", in.cfg.DataDir, trash, err)
	}
	return nil
}

// checkReachable fails when os_user cannot traverse a parent of dir
// (Postgres would fail later with a bare "permission denied").
func (in *Instance) checkReachable(dir string) error {
	if os.Geteuid() != 0 {
		return nil // we are os_user: our own access errors are precise enough
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil {
			sys, ok := st.Sys().(*syscall.Stat_t)
			if ok {
				perm := st.Mode().Perm()
				can := perm&0o001 != 0 ||
					(sys.Uid == in.user.uid && perm&0o100 != 0) ||
					(sys.Gid == in.user.gid && perm&0o010 != 0)
				if !can {
					return fmt.Errorf("replication: os_user %s cannot reach data directory %s: %s is mode %04o owned by uid %d: run chmod o+x %s, or put data_dir elsewhere",
						in.user.name, dir, p, perm, sys.Uid, p)
				}
			}
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

// checkOwner fails when dir exists and belongs to another user than
// os_user, or os_user cannot reach it.
func (in *Instance) checkOwner(dir string) error {
	if err := in.checkReachable(dir); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("replication: data directory %s: %w", dir, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if sys.Uid != in.user.uid {
		return fmt.Errorf("%w: %s belongs to uid %d, but postgresql.os_user is %s (uid %d): run chown -R %s: %s, or set os_user to the owner",
			ErrWrongOwner, dir, sys.Uid, in.user.name, in.user.uid, in.user.name, dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("replication: data directory %s is not a directory", dir)
	}
	return nil
}
