package daemon

// The production wiring of the REST API and the pooler onto a Daemon: the
// adapters that turn the HA loop's state into restapi.Node and
// pooler.Router, and the sentinel-error mapping to the API's status codes.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/version"
	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/pooler"
	"github.com/pgha/pgha/restapi"
)

// defaultAuthQuery is PgBouncer's default auth_query.
const defaultAuthQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"

// Version is what /patroni reports as patroni.version.
const Version = version.Version

// AddComponents wires the REST API (always) and the pooler (when
// pooler.enabled) onto d, sharing one Prometheus registry for /metrics.
// configPath is the file POST /reload re-reads ("" refuses reloads). Both
// listeners are bound here, so a port already in use fails start-up
// instead of the first request.
func (d *Daemon) AddComponents(configPath string) error {
	reg := prometheus.NewRegistry()
	cfg := d.Config()
	api, err := restapi.New(cfg.RESTAPI, apiNode{d}, apiActions{d: d, path: configPath}, reg, d.log)
	if err != nil {
		return fmt.Errorf("daemon: REST API: %w", err)
	}
	if err := api.Listen(); err != nil {
		return fmt.Errorf("daemon: REST API: %w", err)
	}
	d.Add("restapi", api.Run)
	d.OnCycle(api.Metrics().ObserveLoop)
	d.OnFailover(api.Metrics().Failovers.Inc)
	if !cfg.Pooler.Enabled {
		return nil
	}
	pcfg, defaultAuth := poolerConfig(cfg)
	su := cfg.PostgreSQL.Authentication.Superuser
	router := &poolerRouter{d: d, kick: make(chan struct{}, 1)}
	if self, ok := connAddr(connURL(cfg.PostgreSQL)); ok && cfg.Pooler.LocalUnixSocket {
		router.self, router.socket = self, d.inst.SocketPath()
		d.inst.AllowLocalPasswords()
	}
	p, err := pooler.New(pcfg, router, d.log)
	if err != nil {
		return fmt.Errorf("daemon: pooler: %w", err)
	}
	if defaultAuth {
		if err := p.SetAuthUser(su.Username, su.Password); err != nil {
			return fmt.Errorf("daemon: pooler: %w", err)
		}
		d.log.Info("pooler: no auth_file or auth_query set: logins are checked against Postgres's passwords (auth_query as the superuser)", "auth_user", su.Username)
	}
	if err := reg.Register(p.Collector()); err != nil {
		return fmt.Errorf("daemon: pooler metrics: %w", err)
	}
	if err := p.Listen(); err != nil {
		return fmt.Errorf("daemon: pooler: %w", err)
	}
	d.OnFence(router.fence)
	d.OnReload(func(next config.Config) ([]string, error) {
		pc, _ := poolerConfig(next)
		return p.Reload(pc)
	})
	d.Add("pooler-routing", router.run)
	d.Add("pooler", p.Run)
	return nil
}

// poolerConfig is the pooler's configuration for a node config: with no
// user list configured (no auth_file, no auth_query, not trust), users
// are looked up in Postgres as the superuser with PgBouncer's default
// auth_query (defaultAuth).
func poolerConfig(cfg config.Config) (pcfg config.Pooler, defaultAuth bool) {
	pcfg = cfg.Pooler
	su := cfg.PostgreSQL.Authentication.Superuser
	defaultAuth = pcfg.AuthFile == "" && pcfg.AuthQuery == "" && pcfg.AuthType != "trust" && su.Username != ""
	if defaultAuth {
		pcfg.AuthUser, pcfg.AuthQuery = su.Username, defaultAuthQuery
	}
	return pcfg, defaultAuth
}

// poolerRouter routes the pooler by the cluster view. While etcd cannot be
// read the view may be stale, so no primary is named and new transactions
// wait (bounded by query_wait_timeout) rather than risk a demoted node.
//
// When this node must stop taking writes (fencing, a switchover, a
// shutdown handover) the daemon's fence hook withdraws the current leader
// from routing at once, before the loop has read a new view: new
// transactions wait while running ones finish, and nothing is sent to a
// server that is shutting down. The withdrawal ends when the leader key
// changes hands (even back to this node) or after ttl.
type poolerRouter struct {
	d    *Daemon
	kick chan struct{}
	// socket, when set, replaces self, this node's own address, in the
	// targets (pooler.local_unix_socket).
	self, socket string

	mu        sync.Mutex
	fenced    bool
	fencedAt  time.Time
	fencedRev int64 // the leader key's revision when fenced; 0 until read
}

func (r *poolerRouter) Primary() (string, bool) {
	v, ok := r.d.View()
	if !ok {
		return "", false
	}
	r.mu.Lock()
	if r.fenced && r.fencedRev == 0 {
		r.fencedRev = v.LeaderRevision
	}
	if r.fenced && (v.LeaderRevision != r.fencedRev || time.Since(r.fencedAt) > v.Config.TTL.D()) {
		r.fenced = false
	}
	fenced := r.fenced
	r.mu.Unlock()
	if fenced {
		return "", false
	}
	t := r.targets(v)
	return t.Primary, t.Primary != ""
}

func (r *poolerRouter) Replicas() []string {
	v, _ := r.d.View()
	return r.targets(v).Replicas
}

// targets are the view's targets with this node's address replaced by
// its Unix socket when pooler.local_unix_socket is on.
func (r *poolerRouter) targets(v cluster.View) Targets {
	t := TargetsOf(v)
	if r.socket == "" {
		return t
	}
	if t.Primary == r.self {
		t.Primary = r.socket
	}
	for i, a := range t.Replicas {
		if a == r.self {
			t.Replicas[i] = r.socket
		}
	}
	return t
}

func (r *poolerRouter) Changed() <-chan struct{} { return r.kick }

func (r *poolerRouter) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// fence is the daemon's fence hook. It runs inside the HA loop, so it
// must neither block nor read the loop's view.
func (r *poolerRouter) fence() {
	r.mu.Lock()
	r.fenced, r.fencedAt, r.fencedRev = true, time.Now(), 0
	r.mu.Unlock()
	r.signal()
}

// run forwards the loop's change notifications to the pooler.
func (r *poolerRouter) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.d.Changed():
			r.signal()
		}
	}
}

// apiNode adapts the daemon to restapi.Node from the HA loop's last cycle,
// so a health check never queries Postgres.
type apiNode struct{ d *Daemon }

func (n apiNode) View() (cluster.View, bool) { return n.d.View() }

func (n apiNode) Local(ctx context.Context) restapi.LocalStatus {
	cfg, info := n.d.Config(), n.d.LoopInfo()
	l := info.Local
	st := restapi.LocalStatus{Name: cfg.Name, Scope: cfg.Scope, Version: Version,
		IsLeader: info.IsLeader, DCSLastSeen: info.DCSLastSeen, LastLoop: info.LastLoop,
		Tags: cfg.Tags, SystemIdentifier: l.SystemID, PendingRestart: l.PendingRestart,
		State: cluster.StateStopped, Role: cluster.RoleReplica}
	if !l.Initialized {
		st.Role = cluster.RoleUninitialized
	}
	if l.Running {
		st.State, st.Queried = cluster.StateRunning, true
		st.ServerVersion, st.Timeline = l.ServerVersion, l.Timeline
		if l.InRecovery {
			st.ReceivedLocation, st.ReplayedLocation = l.ReceiveLSN, l.ReplayLSN
			if l.Streaming {
				st.ReplicationState = "streaming"
			}
		} else {
			st.Role, st.XLogLocation = cluster.RolePrimary, l.Position
		}
	}
	return st
}

// Detail fills GET /patroni's live values from Postgres (restapi.Detailer):
// a Patroni leader compares these positions before it releases its key.
func (n apiNode) Detail(ctx context.Context, st *restapi.LocalStatus) {
	d, err := n.d.inst.Details(ctx)
	if err != nil {
		return
	}
	st.PostmasterStartTime = d.PostmasterStart
	if !d.InRecovery {
		st.XLogLocation = int64(d.WriteLSN)
	} else {
		st.ReceivedLocation, st.ReplayedLocation = int64(d.ReceiveLSN), int64(d.ReplayLSN)
		st.ReplayedTimestamp, st.ReplayPaused, st.LatestEndLSN = d.ReplayTime, d.ReplayPaused, int64(d.LatestEndLSN)
	}
	st.Replication = st.Replication[:0]
	for _, r := range d.Replication {
		st.Replication = append(st.Replication, restapi.ReplicationRow{Usename: r.Usename, ApplicationName: r.ApplicationName,
			ClientAddr: r.ClientAddr, State: r.State, SyncState: r.SyncState, SyncPriority: r.SyncPriority})
	}
}

// apiActions adapts the daemon to restapi.Actions.
type apiActions struct {
	d    *Daemon
	path string
}

// apiErr maps the daemon's sentinels to the API's (409, 412).
func apiErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, leader.ErrConflict):
		return fmt.Errorf("%w: %w", restapi.ErrConflict, err)
	case errors.Is(err, ErrNotPossible):
		return fmt.Errorf("%w: %w", restapi.ErrNotPossible, err)
	}
	return err
}

func (a apiActions) RequestFailover(ctx context.Context, f cluster.Failover) error {
	return apiErr(a.d.RequestFailover(ctx, f))
}

func (a apiActions) ClearFailover(ctx context.Context, rev int64) error {
	return apiErr(a.d.ClearFailover(ctx, rev))
}

func (a apiActions) Restart(ctx context.Context) error { return apiErr(a.d.Restart(ctx)) }

func (a apiActions) Reinitialize(ctx context.Context, force bool) error {
	return apiErr(a.d.Reinitialize(ctx, force))
}

func (a apiActions) SetConfig(ctx context.Context, c config.DynamicConfig, rev int64) error {
	return apiErr(a.d.SetConfig(ctx, c, rev))
}

func (a apiActions) Reload(ctx context.Context) error {
	if a.path == "" {
		return fmt.Errorf("%w: this daemon was started without a config file to re-read", restapi.ErrNotPossible)
	}
	if err := a.d.ReloadFile(ctx, a.path); err != nil && !errors.Is(err, ErrNeedsRestart) {
		return fmt.Errorf("%w: %w", restapi.ErrBadRequest, err)
	}
	return nil
}
