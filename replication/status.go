package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgha/pgha/cluster"
)

// LSN is a WAL position in bytes.
type LSN uint64

// String formats the LSN as Postgres does (16/B374D848).
func (l LSN) String() string { return cluster.FormatLSN(int64(l)) }

// ParseLSN reads "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("replication: bad LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("replication: bad LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

// Status is a snapshot of the local server.
type Status struct {
	// Running: the postmaster is alive and answered queries.
	Running bool
	PID     int
	// InRecovery: a replica (or a primary still starting up).
	InRecovery bool
	// Timeline is the current timeline (from the WAL position on a
	// primary, the replayed/received timeline on a replica, the control
	// file when stopped).
	Timeline int64
	// SystemIdentifier is the cluster's identity (pg_controldata); it is
	// known even when the server is stopped.
	SystemIdentifier string
	// ClusterState is pg_controldata's "Database cluster state"
	// ("in production", "shut down", "in archive recovery", ...).
	ClusterState string
	// ServerVersion is server_version_num (150004), 0 when stopped.
	ServerVersion int
	// Primary: WriteLSN = pg_current_wal_lsn, FlushLSN =
	// pg_current_wal_flush_lsn. Replica: written/flushed by the WAL
	// receiver; ReceiveLSN and ReplayLSN as pg_last_wal_*_lsn.
	WriteLSN, FlushLSN, ReceiveLSN, ReplayLSN LSN
	// Receiver is pg_stat_wal_receiver's status ("streaming") on a
	// replica, empty when no receiver runs.
	Receiver string
	// SenderHost and SenderPort are the server the receiver streams from.
	SenderHost string
	SenderPort int
	// Replication lists pg_stat_replication on this server.
	Replication []ReplicationRow
	// PendingRestart: some changed parameter needs a restart.
	PendingRestart bool
}

// ReplicationRow is one row of pg_stat_replication.
type ReplicationRow struct {
	PID             int
	ApplicationName string
	ClientAddr      string
	State           string
	SyncState       string
	SentLSN         LSN
	WriteLSN        LSN
	FlushLSN        LSN
	ReplayLSN       LSN
}

// Status reports the server's state. A stopped server is not an error:
// Running is false and the control-file fields are filled. When the
// postmaster is alive but cannot be queried (still starting, or hung),
// Status returns what it knows (PID set, Running false) together with the
// error; a server still in startup (57P03) is not an error.
func (in *Instance) Status(ctx context.Context) (Status, error) {
	var st Status
	if !in.IsInitialized() {
		return st, fmt.Errorf("%w: %s", ErrNotInitialized, in.cfg.DataDir)
	}
	cd, err := in.ControlData(ctx)
	if err != nil {
		return st, err
	}
	st.SystemIdentifier = cd["Database system identifier"]
	st.ClusterState = cd["Database cluster state"]
	// The latest checkpoint's timeline; a standby's minimum recovery
	// point can be on a newer one (it moves with replay, a restartpoint
	// only every checkpoint_timeout). A running replica's WAL receiver
	// tells the timeline it receives (below).
	for _, k := range []string{"Latest checkpoint's TimeLineID", "Min recovery ending loc's timeline"} {
		if tl, err := strconv.ParseInt(cd[k], 10, 64); err == nil && tl > st.Timeline {
			st.Timeline = tl
		}
	}
	st.PID = in.postmasterPID()
	if st.PID == 0 {
		return st, nil
	}
	err = in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error { return queryStatus(ctx, c, &st) })
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "57P03" { // cannot_connect_now: starting up
			return st, nil
		}
		return st, err
	}
	st.Running = true
	return st, nil
}

func queryStatus(ctx context.Context, c *pgx.Conn, st *Status) error {
	var ver string
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('server_version_num'), (SELECT bool_or(pending_restart) FROM pg_settings)").
		Scan(&st.InRecovery, &ver, &st.PendingRestart); err != nil {
		return fmt.Errorf("replication: status: %w", err)
	}
	st.ServerVersion, _ = strconv.Atoi(ver)
	lsn := func(s *string) LSN {
		if s == nil {
			return 0
		}
		l, _ := ParseLSN(*s)
		return l
	}
	if !st.InRecovery {
		var w, f string
		var walfile string
		if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text, pg_current_wal_flush_lsn()::text, pg_walfile_name(pg_current_wal_lsn())").
			Scan(&w, &f, &walfile); err != nil {
			return fmt.Errorf("replication: status: wal position: %w", err)
		}
		st.WriteLSN, st.FlushLSN = lsn(&w), lsn(&f)
		if len(walfile) >= 8 {
			if tl, err := strconv.ParseInt(walfile[:8], 16, 64); err == nil {
				st.Timeline = tl
			}
		}
	} else {
		var recv, replay, written, flushed, status, host *string
		var port, tli *int64
		if err := c.QueryRow(ctx, `SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
			r.written_lsn::text, r.flushed_lsn::text, r.status, r.sender_host, r.sender_port::bigint, r.received_tli::bigint
			FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver r ON true`).
			Scan(&recv, &replay, &written, &flushed, &status, &host, &port, &tli); err != nil {
			return fmt.Errorf("replication: status: wal receiver: %w", err)
		}
		st.ReceiveLSN, st.ReplayLSN, st.WriteLSN, st.FlushLSN = lsn(recv), lsn(replay), lsn(written), lsn(flushed)
		if status != nil {
			st.Receiver = *status
		}
		if host != nil {
			st.SenderHost = *host
		}
		if port != nil {
			st.SenderPort = int(*port)
		}
		if tli != nil && *tli > st.Timeline {
			st.Timeline = *tli
		}
	}
	rows, err := c.Query(ctx, `SELECT pid, coalesce(application_name, ''), coalesce(host(client_addr), ''), coalesce(state, ''),
		coalesce(sync_state, ''), sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text
		FROM pg_stat_replication ORDER BY application_name, pid`)
	if err != nil {
		return fmt.Errorf("replication: status: pg_stat_replication: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ReplicationRow
		var sent, write, flush, replay *string
		if err := rows.Scan(&r.PID, &r.ApplicationName, &r.ClientAddr, &r.State, &r.SyncState, &sent, &write, &flush, &replay); err != nil {
			return fmt.Errorf("replication: status: pg_stat_replication: %w", err)
		}
		r.SentLSN, r.WriteLSN, r.FlushLSN, r.ReplayLSN = lsn(sent), lsn(write), lsn(flush), lsn(replay)
		st.Replication = append(st.Replication, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("replication: status: pg_stat_replication: %w", err)
	}
	return nil
}

// ControlData runs pg_controldata and returns its fields ("Database
// system identifier", "Database cluster state", "Latest checkpoint's
// TimeLineID", ...). It works while the server is stopped.
func (in *Instance) ControlData(ctx context.Context) (map[string]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := run(cctx, commandAs(cctx, in.user, in.bin("pg_controldata"), "-D", in.cfg.DataDir), "pg_controldata "+in.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// SystemIdentifier returns the cluster's system identifier from the
// control file (works while stopped).
func (in *Instance) SystemIdentifier(ctx context.Context) (string, error) {
	cd, err := in.ControlData(ctx)
	if err != nil {
		return "", err
	}
	id := cd["Database system identifier"]
	if id == "" {
		return "", fmt.Errorf("replication: pg_controldata %s printed no system identifier", in.cfg.DataDir)
	}
	return id, nil
}

// CheckpointLocation returns the control file's "Latest checkpoint
// location". After a clean shutdown it is the shutdown checkpoint: a
// replica whose ReplayLSN is past it holds every record of this server,
// so it can be promoted and this server can follow it without a rewind.
func (in *Instance) CheckpointLocation(ctx context.Context) (LSN, error) {
	cd, err := in.ControlData(ctx)
	if err != nil {
		return 0, err
	}
	return ParseLSN(cd["Latest checkpoint location"])
}

// Slot is one replication slot.
type Slot struct {
	Name       string
	Type       string // physical or logical
	Active     bool
	RestartLSN LSN
	// Database and Plugin describe a logical slot.
	Database, Plugin string
}

// CreateSlot creates a physical replication slot reserving WAL now. An
// existing slot of that name is not an error.
func (in *Instance) CreateSlot(ctx context.Context, name string) error {
	if err := checkSlotName(name); err != nil {
		return err
	}
	return in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)
			WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, name)
		if err != nil {
			return fmt.Errorf("replication: create slot %s: %w", name, err)
		}
		return nil
	})
}

// DropSlot drops a replication slot; a missing slot is not an error. An
// active slot cannot be dropped (Postgres refuses).
func (in *Instance) DropSlot(ctx context.Context, name string) error {
	if err := checkSlotName(name); err != nil {
		return err
	}
	return in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, name)
		if err != nil {
			return fmt.Errorf("replication: drop slot %s: %w", name, err)
		}
		return nil
	})
}

// Slots lists the replication slots.
func (in *Instance) Slots(ctx context.Context) ([]Slot, error) {
	var out []Slot
	err := in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT slot_name::text, slot_type, active, restart_lsn::text,
			coalesce(database::text, ''), coalesce(plugin::text, '') FROM pg_replication_slots ORDER BY slot_name`)
		if err != nil {
			return fmt.Errorf("replication: list slots: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var s Slot
			var restart *string
			if err := rows.Scan(&s.Name, &s.Type, &s.Active, &restart, &s.Database, &s.Plugin); err != nil {
				return fmt.Errorf("replication: list slots: %w", err)
			}
			if restart != nil {
				s.RestartLSN, _ = ParseLSN(*restart)
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	return out, err
}

// checkSlotName enforces Postgres's slot name rule: lower-case letters,
// digits and underscores, at most 63 characters.
func checkSlotName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("replication: slot name %q must be 1-63 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("replication: slot name %q may hold only a-z, 0-9 and _", name)
		}
	}
	return nil
}

// SlotName turns a member name into a valid slot name, as Patroni does:
// lower case, other characters replaced by _.
func SlotName(member string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(member) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}
