package replication

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Details are the live values Patroni's GET /patroni reports beyond the
// HA loop's last cycle, read in one query.
type Details struct {
	PostmasterStart time.Time
	InRecovery      bool
	// WriteLSN is a primary's current WAL position.
	WriteLSN LSN
	// ReceiveLSN, ReplayLSN, ReplayTime, ReplayPaused and LatestEndLSN
	// describe a replica (LatestEndLSN: pg_stat_wal_receiver's).
	ReceiveLSN, ReplayLSN LSN
	ReplayTime            *time.Time
	ReplayPaused          bool
	LatestEndLSN          LSN
	// Replication lists pg_stat_replication on a primary.
	Replication []Downstream
}

// Downstream is one pg_stat_replication row.
type Downstream struct {
	Usename, ApplicationName, ClientAddr, State, SyncState string
	SyncPriority                                           int
}

// Details reads the live status in one round trip.
func (in *Instance) Details(ctx context.Context) (Details, error) {
	var d Details
	err := in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var write, recv, replay, latest *string
		var rows [][]any
		err := c.QueryRow(ctx, `SELECT pg_postmaster_start_time(), pg_is_in_recovery(),
			CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
			pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
			pg_last_xact_replay_timestamp(),
			CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
			(SELECT latest_end_lsn::text FROM pg_stat_wal_receiver),
			coalesce((SELECT json_agg(json_build_array(usename, application_name, coalesce(client_addr::text, ''),
				state, sync_state, sync_priority) ORDER BY application_name) FROM pg_stat_replication), '[]'::json)`).
			Scan(&d.PostmasterStart, &d.InRecovery, &write, &recv, &replay, &d.ReplayTime, &d.ReplayPaused, &latest, &rows)
		if err != nil {
			return err
		}
		for _, x := range []struct {
			s   *string
			dst *LSN
		}{{write, &d.WriteLSN}, {recv, &d.ReceiveLSN}, {replay, &d.ReplayLSN}, {latest, &d.LatestEndLSN}} {
			if x.s != nil {
				*x.dst, _ = ParseLSN(*x.s)
			}
		}
		for _, r := range rows {
			if len(r) != 6 {
				continue
			}
			str := func(v any) string { s, _ := v.(string); return s }
			prio, _ := r[5].(float64)
			d.Replication = append(d.Replication, Downstream{Usename: str(r[0]), ApplicationName: str(r[1]),
				ClientAddr: str(r[2]), State: str(r[3]), SyncState: str(r[4]), SyncPriority: int(prio)})
		}
		return nil
	})
	if err != nil {
		return Details{}, fmt.Errorf("replication: status details: %w", err)
	}
	return d, nil
}

// Busy counts client sessions running a statement or inside a
// transaction (not the caller's own, not WAL senders): what a planned
// stop waits for.
func (in *Instance) Busy(ctx context.Context) (int, error) {
	var n int
	err := in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
			  AND (state = 'active' OR state LIKE 'idle in transaction%')`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("replication: count busy sessions: %w", err)
	}
	return n, nil
}
