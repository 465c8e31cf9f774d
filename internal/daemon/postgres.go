package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/replication"
)

// pgAdapter drives a replication.Instance through leader.Postgres.
type pgAdapter struct {
	in *replication.Instance
}

var _ leader.Postgres = pgAdapter{}

func primaryOf(up leader.Upstream) replication.Primary {
	p := replication.Primary{Host: up.Host, Port: up.Port}
	if up.Slot != "" {
		p.Slot = replication.SlotName(up.Slot)
	}
	return p
}

func (p pgAdapter) Status(ctx context.Context) (leader.Local, error) {
	if !p.in.IsInitialized() {
		return leader.Local{}, nil
	}
	st, err := p.in.Status(ctx)
	local := leader.Local{
		Initialized:    true,
		Standby:        p.in.IsStandby(),
		Running:        st.Running,
		Alive:          p.in.IsRunning(),
		InRecovery:     st.InRecovery,
		Timeline:       st.Timeline,
		SystemID:       st.SystemIdentifier,
		ReceiveLSN:     int64(st.ReceiveLSN),
		ReplayLSN:      int64(st.ReplayLSN),
		Streaming:      st.Receiver == "streaming",
		ServerVersion:  st.ServerVersion,
		PendingRestart: st.PendingRestart,
	}
	if st.InRecovery {
		local.Position = max(int64(st.ReceiveLSN), int64(st.ReplayLSN))
	} else {
		local.Position = int64(st.WriteLSN)
	}
	if err != nil {
		if errors.Is(err, replication.ErrNotInitialized) {
			return leader.Local{}, nil
		}
		return local, fmt.Errorf("daemon: postgres status: %w", err)
	}
	return local, nil
}

func (p pgAdapter) Alive() bool { return p.in.IsRunning() }

func (p pgAdapter) Bootstrap(ctx context.Context) error { return p.in.Init(ctx) }
func (p pgAdapter) Start(ctx context.Context) error     { return p.in.Start(ctx) }
func (p pgAdapter) Promote(ctx context.Context) error   { return p.in.PromoteFast(ctx) }
func (p pgAdapter) FinishPromote(ctx context.Context) error {
	return p.in.FinishPromote(ctx)
}
func (p pgAdapter) Checkpoint(ctx context.Context) error { return p.in.Checkpoint(ctx) }
func (p pgAdapter) StoppedAt(ctx context.Context) (int64, error) {
	lsn, err := p.in.CheckpointLocation(ctx)
	return int64(lsn), err
}

func (p pgAdapter) SwitchPoint(ctx context.Context) (int64, int64, error) {
	tl, lsn, err := p.in.SwitchPoint(ctx)
	return tl, int64(lsn), err
}

func (p pgAdapter) Stop(ctx context.Context, immediate bool) error {
	mode := replication.StopFast
	if immediate {
		mode = replication.StopImmediate
	}
	return p.in.Stop(ctx, mode)
}

// Demote with no upstream makes a standby without primary_conninfo
// (read-only, waiting for the loop to point it at a leader).
func (p pgAdapter) Demote(ctx context.Context, up *leader.Upstream) error {
	var target replication.Primary
	if up != nil {
		target = primaryOf(*up)
	}
	return p.in.Demote(ctx, target)
}

func (p pgAdapter) Follow(ctx context.Context, up leader.Upstream) error {
	return p.in.Follow(ctx, primaryOf(up))
}

func (p pgAdapter) Clone(ctx context.Context, up leader.Upstream) error {
	return p.in.CloneFrom(ctx, primaryOf(up))
}

func (p pgAdapter) CheckSource(ctx context.Context, up leader.Upstream) error {
	return p.in.CheckSource(ctx, primaryOf(up))
}

func (p pgAdapter) Rewind(ctx context.Context, up leader.Upstream) error {
	return p.in.Rewind(ctx, primaryOf(up))
}

func (p pgAdapter) Wipe(ctx context.Context) error { return p.in.Wipe(ctx) }

func (p pgAdapter) SetSyncStandby(ctx context.Context, members []string) error {
	return p.in.SetSyncStandby(ctx, members)
}

func (p pgAdapter) Streaming(ctx context.Context) (map[string]string, error) {
	return p.in.Streaming(ctx)
}

func (p pgAdapter) SyncSlots(ctx context.Context, want leader.Slots) error {
	return p.in.SyncSlots(ctx, replication.SlotSpec{Members: want.Members, Permanent: want.Permanent, Ignore: want.Ignore})
}

func (p pgAdapter) Busy(ctx context.Context) (int, error) { return p.in.Busy(ctx) }
