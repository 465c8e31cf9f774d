package leader

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
)

// peers are the other members' positions: from their member keys, and,
// when the leader key is free and this node might take it, refreshed from
// their REST API.
func (l *Loop) peers(ctx context.Context, v cluster.View, viewOK bool, local Local) []Peer {
	ps := peersOf(v, l.opt.Name)
	named := v.Failover != nil && v.Failover.Member == l.opt.Name
	if viewOK && v.Leader == "" && v.Initialize != "" && local.Running && !named {
		// A named candidate takes the key whatever its peers' positions:
		// asking them would only delay a switchover.
		ps = probePeers(ctx, l.http, v, ps)
	}
	return ps
}

func peersOf(v cluster.View, me string) []Peer {
	var out []Peer
	for _, m := range v.Members {
		if m.Name == me {
			continue
		}
		out = append(out, Peer{
			Name:         m.Name,
			Position:     m.XLogLocation,
			Running:      m.State == cluster.StateRunning || m.State == cluster.StateStreaming,
			InRecovery:   m.Role != cluster.RolePrimary,
			Tags:         m.Tags,
			FenceRefused: m.WatchdogFailed,
		})
	}
	return out
}

// noteRole logs a role change as one INFO line.
func (l *Loop) noteRole(local Local, holds bool, why string) {
	role := cluster.RoleUninitialized
	state := cluster.StateStopped
	switch {
	case !local.Initialized:
	case local.Running && !local.InRecovery:
		role, state = cluster.RolePrimary, cluster.StateRunning
	case local.Running:
		role, state = cluster.RoleReplica, cluster.StateRunning
		if local.Streaming {
			state = cluster.StateStreaming
		}
	default:
		role = cluster.RoleReplica
		if l.role == cluster.RolePrimary || l.role == cluster.RoleDemoted {
			role = cluster.RoleDemoted
		}
	}
	if role != l.role {
		l.log.Info("role changed", "old_role", string(l.role), "new_role", string(role),
			"timeline", local.Timeline, "lsn", cluster.FormatLSN(local.Position), "leader", holds, "why", why)
	}
	l.role, l.state = role, state
	l.noteEvent(local.Running, role)
}

func (l *Loop) publishMember(ctx context.Context, local Local) {
	l.mu.Lock()
	paused := l.view.Paused()
	l.mu.Unlock()
	m := cluster.Member{
		Pause:          paused,
		ConnURL:        l.opt.ConnURL,
		APIURL:         l.opt.APIURL,
		State:          l.state,
		Role:           l.role,
		Timeline:       local.Timeline,
		XLogLocation:   local.Position,
		ReceiveLSN:     local.ReceiveLSN,
		ReplayLSN:      local.ReplayLSN,
		PendingRestart: local.PendingRestart,
		Tags:           l.tags(),
	}
	// Patroni's member key carries the agent's version (patronictl
	// compares it as its own), not the server's.
	m.Version = l.opt.Version
	m.WatchdogFailed = l.fenceRefused.Load()
	if local.Streaming {
		m.ReplicationState = "streaming"
	}
	l.memberMu.Lock()
	l.memberDoc = m
	l.memberMu.Unlock()
	if id := l.lease.State().ID; id != 0 {
		if err := l.store.PublishMember(ctx, id, m); err != nil {
			l.log.Debug("publish member", "err", err)
		}
	}
}

// republishMember puts the last member document under a newly granted
// lease at once. The lease is regranted by its own goroutine while the
// loop may be busy in a long action (a rewind, then a standby start that
// waits for WAL through a replication slot): without its member key the
// leader would not create that slot, and the start would wait in vain.
func (l *Loop) republishMember(id clientv3.LeaseID) {
	l.memberMu.Lock()
	m := l.memberDoc
	l.memberMu.Unlock()
	if m.ConnURL == "" {
		return // never published: the loop's first cycle will
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.store.PublishMember(ctx, id, m); err != nil {
		l.log.Debug("republish member under the new lease", "err", err)
	}
}

// PostgresEvent is what happened to the local Postgres between two
// observations, for the operator's callbacks.
type PostgresEvent string

// Events the loop reports (OnEvent).
const (
	EventStarted     PostgresEvent = "started"
	EventStopped     PostgresEvent = "stopped"
	EventRoleChanged PostgresEvent = "role_changed"
)

// noteEvent compares the local Postgres with its last observation and
// reports a start, a stop, or a change of the role it runs as (promoted,
// demoted). The first observation after the daemon starts only sets the
// baseline: adopting a running server is not a start.
func (l *Loop) noteEvent(running bool, role cluster.Role) {
	prev := l.observed
	l.observed = observation{seen: true, running: running, role: role}
	if running {
		l.observed.runningRole = role
	} else {
		l.observed.runningRole = prev.runningRole
	}
	if !prev.seen || l.opt.OnEvent == nil {
		return
	}
	switch {
	case running && !prev.running && prev.runningRole != "" && prev.runningRole != role:
		l.opt.OnEvent(EventRoleChanged, role)
	case running && !prev.running:
		l.opt.OnEvent(EventStarted, role)
	case !running && prev.running:
		l.opt.OnEvent(EventStopped, prev.role)
	case running && role != prev.role:
		l.opt.OnEvent(EventRoleChanged, role)
	}
}

// observation is the local Postgres as noteEvent last saw it.
type observation struct {
	seen, running bool
	role          cluster.Role
	// runningRole is the role it last ran as.
	runningRole cluster.Role
}
