package leader

import (
	"context"
	"fmt"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Postgres is what the loop needs from the local Postgres. The daemon
// adapts replication.Instance to it; leader never imports replication.
type Postgres interface {
	// Status reports the local server; a missing data dir is
	// Local{Initialized: false} with a nil error.
	Status(ctx context.Context) (Local, error)
	// Alive reports whether the postmaster process exists: cheap (no SQL),
	// polled often so a crash of the primary is noticed at once.
	Alive() bool
	// Bootstrap runs initdb and starts the new cluster as a primary.
	Bootstrap(ctx context.Context) error
	// Start starts the server as its data dir says (standby or primary).
	Start(ctx context.Context) error
	// Stop stops the server: fast, or immediate when fencing.
	Stop(ctx context.Context, immediate bool) error
	// Promote turns the running replica into a primary and returns as soon
	// as it accepts writes; FinishPromote then readies it for pg_rewind of
	// the old primary (checkpoint) and drops its upstream settings.
	Promote(ctx context.Context) error
	FinishPromote(ctx context.Context) error
	// SwitchPoint reads, after a promotion, the timeline that ended and
	// the LSN where it ended (the new timeline's history file).
	SwitchPoint(ctx context.Context) (timeline, lsn int64, err error)
	// StoppedAt is where a cleanly stopped server's WAL ends: the location
	// of its shutdown checkpoint (pg_controldata).
	StoppedAt(ctx context.Context) (int64, error)
	// Checkpoint runs CHECKPOINT (before a planned stop, so the shutdown
	// checkpoint is short).
	Checkpoint(ctx context.Context) error
	// Demote (re)starts the server as a standby of up; nil up means a
	// standby with no upstream (read-only, waiting for a leader).
	Demote(ctx context.Context, up *Upstream) error
	// Follow points a replica at up (reload, no restart).
	Follow(ctx context.Context, up Upstream) error
	// Clone copies up's data into the empty data dir, configured as its
	// standby (not started).
	Clone(ctx context.Context, up Upstream) error
	// CheckSource connects to up as a clone would (a replication
	// connection): it fails when up cannot be reached, before a re-clone
	// or a rewind stops or removes anything.
	CheckSource(ctx context.Context, up Upstream) error
	// Rewind runs pg_rewind against up and configures a standby of up (not
	// started).
	Rewind(ctx context.Context, up Upstream) error
	// Wipe removes the data dir (the server must be stopped).
	Wipe(ctx context.Context) error
	// SyncSlots makes the running server hold the slots named (one
	// physical slot per member, the permanent slots), and drops the slots
	// pgha created there that are no longer named, unless in use or
	// ignored.
	SyncSlots(ctx context.Context, want Slots) error
	// SetSyncStandby makes members (in order of preference; nil for none)
	// the running primary's synchronous standbys.
	SetSyncStandby(ctx context.Context, members []string) error
	// Streaming maps the members streaming from the primary now to their
	// sync_state in pg_stat_replication (async, sync, ...).
	Streaming(ctx context.Context) (map[string]string, error)
	// Busy counts client sessions running a statement or inside a
	// transaction (not the caller's own, not WAL senders): what a planned
	// stop waits for.
	Busy(ctx context.Context) (int, error)
}

// Upstream is the member a replica streams from.
type Upstream struct {
	Name string
	Host string
	Port int
	// Slot asks for streaming through the replication slot the leader
	// keeps for this member (use_slots); the name is this member's.
	Slot string
}

// UpstreamFromConnURL reads a member's conn_url (postgres://host:port/db).
func UpstreamFromConnURL(name, connURL string) (Upstream, error) {
	e, err := cluster.ParseConnURL(connURL)
	if err != nil {
		return Upstream{}, fmt.Errorf("leader: member %s: %w", name, err)
	}
	return Upstream{Name: name, Host: e.Host, Port: e.Port}, nil
}

// Slots is the set of replication slots one server keeps.
type Slots struct {
	// Members stream through a slot each (named after the member).
	Members []string
	// Permanent are the dynamic config's slots; Ignore its ignore_slots.
	Permanent map[string]config.Slot
	Ignore    []config.IgnoreSlot
}
