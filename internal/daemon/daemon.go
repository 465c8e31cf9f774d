package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/pgha/pgha/callback"
	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/fence"
	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/replication"
	"github.com/pgha/pgha/restapi"
)

// Component is a long-lived part of the daemon (REST API, pooler): it runs
// until ctx ends and returns nil then, or an error that stops the daemon.
type Component func(ctx context.Context) error

// Daemon is one pgha node.
type Daemon struct {
	cfg  config.Config
	log  *slog.Logger
	etcd *EmbeddedEtcd
	cli  *clientv3.Client
	// memberClis are one etcd client per member, for lease keepalives.
	memberClis []*clientv3.Client
	inst       *replication.Instance
	loop       *leader.Loop
	// keeper is the fence keeper's client: it stops Postgres when the
	// write permission runs out while this daemon is dead or frozen.
	keeper *fence.Client
	killed bool
	// callbacks runs postgresql.callbacks scripts.
	callbacks *callback.Runner

	mu         sync.Mutex
	components map[string]Component
	onFence    []func()
	onReload   []func(config.Config) ([]string, error)
	onCycle    []func(time.Duration)
	onFailover []func()
}

type hookSet struct {
	cycle    []func(time.Duration)
	failover []func()
}

func (d *Daemon) hooks() hookSet {
	d.mu.Lock()
	defer d.mu.Unlock()
	return hookSet{cycle: d.onCycle, failover: d.onFailover}
}

// OnCycle registers a hook that gets each HA loop cycle's duration. Hooks
// must not block.
func (d *Daemon) OnCycle(fn func(time.Duration)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onCycle = append(d.onCycle, fn)
}

// OnFailover registers a hook called when this node became the leader of
// a cluster that had lost its leader (not a requested switchover).
func (d *Daemon) OnFailover(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onFailover = append(d.onFailover, fn)
}

// New builds a node from cfg: it starts the embedded etcd when
// etcd.embedded is set, connects the etcd client, and checks the local
// Postgres environment. Run starts the HA loop and the components.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, log: log.With("member", cfg.Name), components: map[string]Component{}}
	peerTLS, err := restapi.ClientTLS(cfg.Ctl, cfg.RESTAPI, false)
	if err != nil {
		return nil, fmt.Errorf("daemon: TLS for asking peers' REST APIs: %w", err)
	}
	inst, err := replication.New(cfg.PostgreSQL, cfg.Bootstrap.Initdb, d.log)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	inst.SetApplicationName(cfg.Name) // pg_stat_replication and synchronous_standby_names by member name
	// The cluster's parameters, for initdb's configuration until etcd's
	// config key is read (then OnView keeps them current).
	inst.SetClusterParameters(cfg.Bootstrap.DCS.PostgreSQL.Parameters)
	d.inst = inst
	etcdCfg := cfg.Etcd
	if cfg.Etcd.Embedded {
		if len(etcdCfg.Endpoints) == 0 {
			return nil, errors.New("daemon: etcd.embedded needs etcd.endpoints[0] as the address to serve clients on")
		}
		peer, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		dir := cfg.Etcd.DataDir
		if dir == "" {
			dir = config.DefaultEtcdDataDir(cfg.PostgreSQL.DataDir, cfg.Name)
		}
		e, err := StartEmbeddedEtcd(ctx, dir, cfg.Name, hostPort(etcdCfg.Endpoints[0]), peer, 30*time.Second)
		if err != nil {
			return nil, err
		}
		d.etcd = e
		etcdCfg.Endpoints = []string{e.ClientURL}
	}
	cli, err := leader.NewClient(etcdCfg)
	if err != nil {
		d.closeEtcd()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.cli = cli
	members, err := leader.NewMemberClients(etcdCfg)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.memberClis = members
	d.keeper = fence.NewClient(fence.ClientConfig{
		DataDir:  cfg.PostgreSQL.DataDir,
		Socket:   filepath.Join(inst.RunDir(), "fence.sock"),
		LogFile:  filepath.Join(inst.RunDir(), "fence-keeper.log"),
		Watchdog: cfg.Watchdog,
		Prepare:  inst.PrepareRunDir,
		Log:      d.log,
	})
	d.callbacks = callback.New(cfg.PostgreSQL.Callbacks, cfg.Scope, d.log)
	d.Add("callbacks", d.callbacks.Run)
	store := leader.NewStore(cli, cfg.Namespace, cfg.Scope, cfg.Name, d.log)
	d.loop = leader.NewLoop(store, pgAdapter{in: inst}, leader.Options{
		Name:          cfg.Name,
		Tags:          cfg.Tags,
		ConnURL:       connURL(cfg.PostgreSQL),
		APIURL:        cfg.RESTAPI.APIURL(),
		PeerTLS:       peerTLS,
		Bootstrap:     cfg.Bootstrap.DCS,
		Version:       Version,
		OnFence:       d.fence,
		Fence:         keeperFence{d.keeper},
		MemberClients: members,
		OnEvent:       d.postgresEvent,
		OnCycle: func(dur time.Duration) {
			for _, h := range d.hooks().cycle {
				h(dur)
			}
		},
		OnView: func(v cluster.View) { inst.SetClusterParameters(v.Config.PostgreSQL.Parameters) },
		OnFailover: func() {
			for _, h := range d.hooks().failover {
				h()
			}
		},
		Log: log,
	})
	d.Add("parameters", d.followParameters)
	if cfg.Etcd.V2LeaderKey {
		v2, err := newV2Leader(etcdCfg, cfg.Namespace, cfg.Scope, cfg.Name)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("daemon: etcd.v2_leader_key: %w", err)
		}
		d.Add("v2-leader-key", d.followV2Leader(v2))
	}
	return d, nil
}

func hostPort(endpoint string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://")
	return strings.TrimSuffix(s, "/")
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("daemon: pick a port for the embedded etcd's peer URL: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Add registers a component to run under the daemon's errgroup. Call it
// before Run.
func (d *Daemon) Add(name string, c Component) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.components[name] = c
}

// OnFence registers a hook called first whenever this node must stop
// taking writes at once (fencing, switchover, shutdown handover): the
// pooler pauses there. Hooks must not block.
func (d *Daemon) OnFence(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onFence = append(d.onFence, fn)
}

func (d *Daemon) fence() {
	d.mu.Lock()
	hooks := append([]func(){}, d.onFence...)
	d.mu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// Run runs the HA loop and every component until ctx ends or one fails,
// then stops cleanly: components end, the leader hands over, Postgres is
// stopped, the etcd client (and embedded etcd) closed.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.loop.Run(gctx) })
	d.mu.Lock()
	for name, c := range d.components {
		g.Go(func() error {
			if err := c(gctx); err != nil {
				return fmt.Errorf("daemon: %s: %w", name, err)
			}
			return nil
		})
	}
	d.mu.Unlock()
	if d.etcd != nil {
		g.Go(func() error {
			select {
			case err := <-d.etcd.Err():
				return fmt.Errorf("daemon: embedded etcd: %w", err)
			case <-gctx.Done():
				return nil
			}
		})
	}
	return g.Wait()
}

func (d *Daemon) close() {
	d.mu.Lock()
	killed := d.killed
	d.mu.Unlock()
	if d.keeper != nil {
		if !killed {
			// A clean stop stopped Postgres (handover): the keeper may go.
			// If Postgres still runs, the keeper stays and guards the lease.
			if err := d.keeper.Dismiss(); err != nil {
				d.log.Warn("fence keeper stays", "err", err)
			}
		}
		d.keeper.Close()
	}
	for _, c := range d.memberClis {
		c.Close()
	}
	if d.cli != nil {
		d.cli.Close()
	}
	d.closeEtcd()
}

func (d *Daemon) closeEtcd() {
	if d.etcd != nil {
		d.etcd.Close()
	}
}

// Kill stops the HA loop at once without handing over, stopping Postgres
// or revoking the lease: what kill -9 of the daemon leaves behind. Tests
// use it; cancel Run's ctx afterwards.
func (d *Daemon) Kill() {
	d.mu.Lock()
	d.killed = true
	d.mu.Unlock()
	d.loop.Kill()
}

// keeperFence adapts the fence keeper's client to the HA loop.
type keeperFence struct{ c *fence.Client }

func (k keeperFence) Allow(until, acked time.Time, ttl time.Duration) error {
	err := k.c.Allow(until, acked, ttl)
	if errors.Is(err, fence.ErrRefused) {
		return fmt.Errorf("%w: %w", leader.ErrWritesRefused, err)
	}
	return err
}

// Name is this member's name.
func (d *Daemon) Name() string { return d.cfg.Name }

// Config returns the node configuration (with reloaded tags).
func (d *Daemon) Config() config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Client is the etcd client (for components that must write keys through
// the leader package, e.g. config PATCH).
func (d *Daemon) Client() *clientv3.Client { return d.cli }

// Instance is the local Postgres.
func (d *Daemon) Instance() *replication.Instance { return d.inst }

// View returns the latest cluster snapshot; ok is false while etcd is
// unreachable or before the first read.
func (d *Daemon) View() (cluster.View, bool) { return d.loop.View() }

// Changed returns a channel closed at the next cycle that published a new
// view or local state; call again after each close.
func (d *Daemon) Changed() <-chan struct{} { return d.loop.Changed() }

// LoopInfo is the HA loop's own state (is leader, last etcd contact, last
// cycle, local Postgres as last seen).
func (d *Daemon) LoopInfo() leader.Info { return d.loop.Info() }

// Targets are where the pooler routes (cluster.TargetsOf).
type Targets = cluster.Targets

// Targets derives the pooler's routing from the loop's view.
func (d *Daemon) Targets() Targets {
	v, _ := d.loop.View()
	return cluster.TargetsOf(v)
}

// TargetsOf derives routing targets from a view.
func TargetsOf(v cluster.View) Targets { return cluster.TargetsOf(v) }

// connAddr is the host:port of a member's conn_url.
func connAddr(connURL string) (string, bool) {
	e, err := cluster.ParseConnURL(connURL)
	return e.Addr(), err == nil
}

// connURL is this node's conn_url in its member key.
func connURL(c config.PostgreSQL) string { return "postgres://" + c.ConnectAddress + "/postgres" }

// RequestFailover writes the failover key and wakes the loop.
func (d *Daemon) RequestFailover(ctx context.Context, f cluster.Failover) error {
	if err := leader.RequestFailover(ctx, d.cli, d.cfg.Namespace, d.cfg.Scope, f); err != nil {
		return err
	}
	d.loop.Wake()
	return nil
}

// ClearFailover deletes the failover key when its revision is still rev
// (leader.ErrConflict otherwise; rev 0 deletes unconditionally).
func (d *Daemon) ClearFailover(ctx context.Context, rev int64) error {
	return leader.ClearFailoverKey(ctx, d.cli, d.cfg.Namespace, d.cfg.Scope, rev)
}

// SetConfig stores the dynamic config if its revision is still rev
// (leader.ErrConflict otherwise).
func (d *Daemon) SetConfig(ctx context.Context, c config.DynamicConfig, rev int64) error {
	if err := leader.CASConfig(ctx, d.cli, d.cfg.Namespace, d.cfg.Scope, c, rev); err != nil {
		return err
	}
	d.loop.Wake()
	return nil
}

// Restart restarts the local Postgres inside the HA loop (between two
// cycles) and returns when it is up or failed to come up.
func (d *Daemon) Restart(ctx context.Context) error {
	err := d.loop.Do(ctx, func(ctx context.Context) error { return d.inst.Restart(ctx) })
	if err == nil {
		d.callbacks.Fire(callback.Event{Action: callback.OnRestart, Role: string(d.loop.Info().Role)})
	}
	return err
}

// postgresEvent turns the loop's observations into callbacks.
func (d *Daemon) postgresEvent(e leader.PostgresEvent, role cluster.Role) {
	action := map[leader.PostgresEvent]string{leader.EventStarted: callback.OnStart,
		leader.EventStopped: callback.OnStop, leader.EventRoleChanged: callback.OnRoleChange}[e]
	d.callbacks.Fire(callback.Event{Action: action, Role: string(role)})
}

// Reinitialize wipes the local data dir and re-clones it from the leader,
// inside the HA loop. It refuses on the leader.
func (d *Daemon) Reinitialize(ctx context.Context, force bool) error {
	return d.loop.Do(ctx, func(ctx context.Context) error {
		v, ok := d.loop.View()
		if !ok {
			return errors.New("daemon: reinitialize: etcd unreachable, leader unknown")
		}
		if v.Leader == d.cfg.Name {
			return fmt.Errorf("daemon: reinitialize: %s is the leader: %w", d.cfg.Name, ErrNotPossible)
		}
		if v.Leader == "" {
			return fmt.Errorf("daemon: reinitialize: the cluster has no leader to clone from: %w", ErrNotPossible)
		}
		if err := d.inst.Stop(ctx, replication.StopFast); err != nil {
			return err
		}
		if err := (pgAdapter{in: d.inst}).Wipe(ctx); err != nil {
			return err
		}
		d.log.Info("reinitialize: data dir wiped; the loop re-clones from the leader", "leader", v.Leader)
		return nil
	})
}

// ErrNotPossible marks a request the cluster's state refuses.
var ErrNotPossible = errors.New("daemon: not possible")

// ReloadFile re-reads the node's configuration file (SIGHUP, POST
// /reload), as Patroni's reload does, and applies what can change
// without a restart: tags at once; postgresql.parameters and pg_hba with
// a Postgres reload (through the HA loop; settings that need a Postgres
// restart show as pending_restart); callbacks; and whatever the reload
// hooks take (the log level, the pooler's settings and user list). Keys
// that need a daemon restart are named in the log and in the returned
// error. A file that no longer validates changes nothing.
func (d *Daemon) ReloadFile(ctx context.Context, path string) error {
	next, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("daemon: reload %s: %w", path, err)
	}
	d.mu.Lock()
	prev := d.cfg
	d.mu.Unlock()
	restart := restartOnly(prev, next)
	err = d.loop.Do(ctx, func(ctx context.Context) error {
		keys, err := d.inst.SetNodeConfig(next.PostgreSQL)
		if err != nil {
			return err
		}
		restart = append(restart, keys...)
		return d.inst.ApplyParameters(ctx)
	})
	if err != nil {
		return fmt.Errorf("daemon: reload %s: postgresql: %w", path, err)
	}
	d.mu.Lock()
	d.cfg.Tags = next.Tags
	d.cfg.PostgreSQL.Parameters, d.cfg.PostgreSQL.PgHBA, d.cfg.PostgreSQL.Callbacks = next.PostgreSQL.Parameters, next.PostgreSQL.PgHBA, next.PostgreSQL.Callbacks
	d.cfg.Log.Level = next.Log.Level
	hooks := slices.Clone(d.onReload)
	d.mu.Unlock()
	d.loop.SetTags(next.Tags)
	d.callbacks.SetConfig(next.PostgreSQL.Callbacks)
	var errs []error
	for _, h := range hooks {
		keys, err := h(next)
		restart = append(restart, keys...)
		errs = append(errs, err)
	}
	slices.Sort(restart)
	restart = slices.Compact(restart)
	d.log.Info("configuration reloaded", "file", path, "tags", fmt.Sprintf("%+v", next.Tags), "needs_restart", restart)
	d.callbacks.Fire(callback.Event{Action: callback.OnReload, Role: string(d.loop.Info().Role)})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("daemon: reload %s: %w", path, err)
	}
	if len(restart) > 0 {
		d.log.Warn("configuration reload: these keys changed but need a daemon restart (systemctl restart pgha)", "keys", strings.Join(restart, ", "))
		return fmt.Errorf("%w: reloaded, but %s need a daemon restart", ErrNeedsRestart, strings.Join(restart, ", "))
	}
	return nil
}

// ErrNeedsRestart marks a reload that applied what it could while some
// changed keys wait for a daemon restart.
var ErrNeedsRestart = errors.New("daemon: some changes need a restart")

// OnReload registers a hook that applies a reloaded configuration (the
// log level, the pooler) and returns the changed keys it cannot apply
// without a restart.
func (d *Daemon) OnReload(fn func(config.Config) ([]string, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onReload = append(d.onReload, fn)
}

// restartOnly lists the keys outside postgresql and pooler that changed
// and only a daemon restart applies.
func restartOnly(prev, next config.Config) []string {
	var keys []string
	add := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	add("scope", prev.Scope != next.Scope)
	add("name", prev.Name != next.Name)
	add("namespace", prev.Namespace != next.Namespace)
	add("etcd", !reflect.DeepEqual(prev.Etcd, next.Etcd))
	add("restapi", !reflect.DeepEqual(prev.RESTAPI, next.RESTAPI))
	add("watchdog", prev.Watchdog != next.Watchdog)
	add("log.format", prev.Log.Format != next.Log.Format)
	add("postgresql.callbacks.timeout", prev.PostgreSQL.Callbacks.Timeout != next.PostgreSQL.Callbacks.Timeout)
	return keys
}
