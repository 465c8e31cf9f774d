package leader

import "context"

// noPostgres is a Postgres with an empty data directory on which every
// operation succeeds and does nothing; tests embed it and override what
// they script.
type noPostgres struct{}

func (noPostgres) Status(context.Context) (Local, error)                { return Local{}, nil }
func (noPostgres) Alive() bool                                          { return false }
func (noPostgres) Bootstrap(context.Context) error                      { return nil }
func (noPostgres) Start(context.Context) error                          { return nil }
func (noPostgres) Stop(context.Context, bool) error                     { return nil }
func (noPostgres) Promote(context.Context) error                        { return nil }
func (noPostgres) FinishPromote(context.Context) error                  { return nil }
func (noPostgres) Checkpoint(context.Context) error                     { return nil }
func (noPostgres) StoppedAt(context.Context) (int64, error)             { return 0, nil }
func (noPostgres) SwitchPoint(context.Context) (int64, int64, error)    { return 0, 0, nil }
func (noPostgres) Demote(context.Context, *Upstream) error              { return nil }
func (noPostgres) Follow(context.Context, Upstream) error               { return nil }
func (noPostgres) Clone(context.Context, Upstream) error                { return nil }
func (noPostgres) Rewind(context.Context, Upstream) error               { return nil }
func (noPostgres) CheckSource(context.Context, Upstream) error          { return nil }
func (noPostgres) Wipe(context.Context) error                           { return nil }
func (noPostgres) SyncSlots(context.Context, Slots) error               { return nil }
func (noPostgres) SetSyncStandby(context.Context, []string) error       { return nil }
func (noPostgres) Streaming(context.Context) (map[string]string, error) { return nil, nil }
func (noPostgres) Busy(context.Context) (int, error)                    { return 0, nil }
