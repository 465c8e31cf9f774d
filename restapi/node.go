package restapi

import (
	"context"
	"errors"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Node is what the API reads from the daemon.
type Node interface {
	// View returns the latest cluster snapshot. ok is false while etcd is
	// unreachable (the last read failed) or before the first read; the API
	// then answers as Patroni does for a node that lost its DCS.
	View() (v cluster.View, ok bool)
	// Local returns this node's own state. It may query Postgres and must
	// honour ctx's deadline (the API gives it about two seconds).
	Local(ctx context.Context) LocalStatus
}

// Actions are the management requests the API hands to the daemon.
// Errors wrapping ErrConflict answer 409, ErrNotPossible 412, ErrBadRequest
// 400; any other error answers 503 with the error text.
type Actions interface {
	// RequestFailover writes the failover key (a switchover when f.Leader
	// is set, a failover to f.Member otherwise; scheduled when
	// f.ScheduledAt is set) and wakes the HA loop. It returns once the key
	// is written; the API then polls View for the outcome.
	RequestFailover(ctx context.Context, f cluster.Failover) error
	// ClearFailover deletes the failover key if its mod_revision still
	// equals revision (ErrConflict otherwise).
	ClearFailover(ctx context.Context, revision int64) error
	// Restart restarts the local Postgres and returns when it is up again
	// (or failed to come up).
	Restart(ctx context.Context) error
	// Reload re-reads the node's configuration file (as SIGHUP does).
	Reload(ctx context.Context) error
	// Reinitialize wipes the local data directory and re-clones it from
	// the leader. It returns once the reclone has started; it must refuse
	// (error) on the leader, and when a task is running unless force.
	Reinitialize(ctx context.Context, force bool) error
	// SetConfig writes the dynamic configuration key if its mod_revision
	// still equals revision, the one the change was based on (0: the key
	// did not exist); otherwise it returns ErrConflict. leader.CASConfig
	// has exactly this contract (wrap leader.ErrConflict in ErrConflict).
	SetConfig(ctx context.Context, c config.DynamicConfig, revision int64) error
}

// Sentinel errors Actions return (wrapped) to choose the HTTP status.
var (
	// ErrConflict: a compare-and-swap lost against a concurrent change (409).
	ErrConflict = errors.New("restapi: conflict")
	// ErrNotPossible: the request is valid but cannot be carried out in
	// the cluster's current state (412).
	ErrNotPossible = errors.New("restapi: not possible")
	// ErrBadRequest: the request is malformed (400).
	ErrBadRequest = errors.New("restapi: bad request")
)

// LocalStatus is this node's own state, Patroni's get_postgresql_status.
// LSNs are byte positions.
type LocalStatus struct {
	// Name and Scope identify the node; Version is pgha's version.
	Name    string
	Scope   string
	Version string
	// State is the Postgres state as Patroni names it; "running" means
	// Postgres accepts connections.
	State cluster.State
	// Role is primary, replica or standby_leader, from pg_is_in_recovery().
	Role cluster.Role
	// Queried is true when the status query on Postgres succeeded; the
	// fields below up to Replication are valid only then. A running
	// Postgres that could not be queried reports state "unknown".
	Queried             bool
	PostmasterStartTime time.Time
	// ServerVersion is Postgres' server_version_num, e.g. 150004.
	ServerVersion int
	Timeline      int64
	// XLogLocation is the primary's flush LSN.
	XLogLocation int64
	// ReceivedLocation, ReplayedLocation, ReplayedTimestamp and
	// ReplayPaused describe a replica.
	ReceivedLocation  int64
	ReplayedLocation  int64
	ReplayedTimestamp *time.Time
	ReplayPaused      bool
	// LatestEndLSN is pg_stat_wal_receiver.latest_end_lsn (the primary's
	// position as the replica last heard it), 0 when unknown.
	LatestEndLSN int64
	// ReplicationState is "streaming", "in archive recovery" or "".
	ReplicationState string
	// Replication lists pg_stat_replication rows on a primary.
	Replication []ReplicationRow
	// IsLeader is true while this node holds the leader key with a lease
	// it has confirmed recently enough to still be valid (it turns false
	// when the node lost etcd long enough for the lease to expire).
	IsLeader bool
	// SystemIdentifier is pg_controldata's database system identifier.
	SystemIdentifier string
	PendingRestart   bool
	// PendingRestartReason maps a parameter to its old and new value.
	PendingRestartReason map[string]ParamChange
	// Tags are the node's effective tags.
	Tags config.Tags
	// DCSLastSeen is when etcd last answered the daemon.
	DCSLastSeen time.Time
	// LastLoop is when the HA loop last completed a cycle (liveness).
	LastLoop time.Time
}

// ReplicationRow is one pg_stat_replication row as Patroni reports it.
type ReplicationRow struct {
	Usename         string `json:"usename"`
	ApplicationName string `json:"application_name"`
	ClientAddr      string `json:"client_addr"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
	SyncPriority    int    `json:"sync_priority"`
}

// ParamChange is one pending_restart_reason entry.
type ParamChange struct {
	OldValue string `json:"old_value"`
	NewValue string `json:"new_value"`
}
