package cluster

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
)

// Role is what a member's Postgres is doing, as Patroni names it.
type Role string

// Roles a member publishes.
const (
	RolePrimary       Role = "primary"
	RoleReplica       Role = "replica"
	RoleStandbyLeader Role = "standby_leader"
	RoleUninitialized Role = "uninitialized"
	RoleDemoted       Role = "demoted"
)

// State is the member's Postgres state, as Patroni names it.
type State string

// States a member publishes.
const (
	StateRunning         State = "running"
	StateStreaming       State = "streaming"
	StateStopped         State = "stopped"
	StateStarting        State = "starting"
	StateStopping        State = "stopping"
	StateCrashed         State = "crashed"
	StateCreatingReplica State = "creating replica"
	StateInitializing    State = "initializing new cluster"
	StateRestarting      State = "restarting"
	StateStartFailed     State = "start failed"
)

// Member is one node's entry under members/<name>, the JSON Patroni keeps
// there. LSNs are byte positions (Patroni's xlog_location is an integer).
type Member struct {
	Name string `json:"-"`
	// ConnURL is postgres://host:port/postgres.
	ConnURL string `json:"conn_url"`
	// APIURL is http://host:port/patroni.
	APIURL   string `json:"api_url"`
	State    State  `json:"state"`
	Role     Role   `json:"role"`
	Version  string `json:"version,omitempty"`
	Timeline int64  `json:"timeline,omitempty"`
	// XLogLocation is the primary's write LSN, or a replica's replay LSN.
	XLogLocation     int64       `json:"xlog_location,omitempty"`
	ReceiveLSN       int64       `json:"receive_lsn,omitempty"`
	ReplayLSN        int64       `json:"replay_lsn,omitempty"`
	ReplicationState string      `json:"replication_state,omitempty"`
	PendingRestart   bool        `json:"pending_restart,omitempty"`
	Tags             config.Tags `json:"tags,omitempty"`
	// Pause is true while the member sees the cluster paused (Patroni's
	// member key says so; patronictl pause --wait waits for it on every
	// member).
	Pause bool `json:"pause,omitempty"`
	// WatchdogFailed: the member's fence refused its write permission the
	// last time it tried to lead (watchdog.mode required without a
	// working device); it cannot lead, and others do not wait for it.
	WatchdogFailed bool `json:"watchdog_failed,omitempty"`
	// Revision is etcd's mod_revision of the key (not stored in the JSON).
	Revision int64 `json:"-"`
}

// MarshalJSON writes the member key as Patroni does: no "tags" key when
// the member has no tag (patronictl list -e prints {} otherwise).
func (m Member) MarshalJSON() ([]byte, error) {
	type plain Member
	out := struct {
		plain
		Tags *config.Tags `json:"tags,omitempty"`
	}{plain: plain(m)}
	if !m.Tags.Empty() {
		out.Tags = &m.Tags
	}
	return json.Marshal(out)
}

// Failover is the failover key: a requested switchover (Leader set) or
// failover (only Member set), optionally scheduled.
type Failover struct {
	Leader      string     `json:"leader,omitempty"`
	Member      string     `json:"member,omitempty"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	Revision    int64      `json:"-"`
}

// Sync is the sync key: the leader and its synchronous standbys.
type Sync struct {
	Leader string `json:"leader"`
	// SyncStandby names the confirmed synchronous standbys, comma
	// separated (Patroni's form).
	SyncStandby string `json:"sync_standby,omitempty"`
	Revision    int64  `json:"-"`
}

// Standbys lists the members SyncStandby names.
func (s Sync) Standbys() []string {
	var out []string
	for _, n := range strings.Split(s.SyncStandby, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// HistoryEntry is one timeline switch, Patroni's
// [timeline, lsn, reason, timestamp, new_leader].
type HistoryEntry struct {
	Timeline  int64
	LSN       int64
	Reason    string
	Timestamp time.Time
	NewLeader string
}

// Status is the status key: the leader's last optime and slot positions.
type Status struct {
	Optime int64            `json:"optime"`
	Slots  map[string]int64 `json:"slots,omitempty"`
}

// View is one consistent snapshot of the cluster in etcd.
type View struct {
	Scope string
	// Revision is the etcd revision the snapshot was read at.
	Revision int64
	// Leader is the member holding the leader key, "" when unlocked.
	Leader string
	// LeaderRevision is the leader key's mod_revision (for fenced writes).
	LeaderRevision int64
	Members        []Member
	Config         config.DynamicConfig
	ConfigRevision int64
	// Initialize is the system identifier the cluster was bootstrapped
	// with, "" before bootstrap.
	Initialize string
	// Bootstrapping: the initialize key exists without a system
	// identifier yet (a member won the race and is running initdb).
	Bootstrapping bool
	Failover      *Failover
	Sync          *Sync
	History       []HistoryEntry
	Status        Status
	// ReadAt is when the snapshot was taken.
	ReadAt time.Time
}

// Member returns the member named name.
func (v View) Member(name string) (Member, bool) {
	for _, m := range v.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// LeaderMember returns the member holding the leader key.
func (v View) LeaderMember() (Member, bool) {
	if v.Leader == "" {
		return Member{}, false
	}
	return v.Member(v.Leader)
}

// Paused reports whether the cluster is in maintenance mode.
func (v View) Paused() bool { return v.Config.Pause }
