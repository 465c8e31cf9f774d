package main

// The daemon-to-restapi adapter the e2e test wires, as `pgha run` should:
// restapi.Node from the HA loop's last cycle, restapi.Actions with the
// daemon's sentinel errors mapped to the API's status codes.

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/restapi"
)

// apiVersion is what /patroni reports as patroni.version.
const apiVersion = "0.1.0"

// apiNode adapts the daemon to restapi.Node from the HA loop's last cycle
// (no Postgres query per health check).
type apiNode struct{ d *daemon.Daemon }

func (n apiNode) View() (cluster.View, bool) { return n.d.View() }

func (n apiNode) Local(ctx context.Context) restapi.LocalStatus {
	cfg, info := n.d.Config(), n.d.LoopInfo()
	l := info.Local
	st := restapi.LocalStatus{Name: cfg.Name, Scope: cfg.Scope, Version: apiVersion,
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

// apiActions adapts the daemon to restapi.Actions, mapping its sentinel
// errors to the API's (409, 412).
type apiActions struct {
	d    *daemon.Daemon
	path string // the config file POST /reload re-reads
}

func apiErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, leader.ErrConflict):
		return fmt.Errorf("%w: %w", restapi.ErrConflict, err)
	case errors.Is(err, daemon.ErrNotPossible):
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
	if err := a.d.ReloadFile(a.path); err != nil {
		return fmt.Errorf("%w: %w", restapi.ErrBadRequest, err)
	}
	return nil
}
