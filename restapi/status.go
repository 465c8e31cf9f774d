package restapi

import (
	"context"
	"strconv"
	"time"

	"github.com/pgha/pgha/cluster"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Detailer is what a Node may implement besides Local so that GET
// /patroni answers with live values, as Patroni's does (it queries
// Postgres on every request): the WAL positions a Patroni leader compares
// before it releases its key in a switchover, the postmaster start time,
// the primary's pg_stat_replication rows. Detail overwrites those fields
// of st, which Local filled from the HA loop's last cycle; it must honour
// ctx's deadline and leave st as it is on failure. Role health checks
// (/primary, /replica, ...) never call it.
type Detailer interface {
	Detail(ctx context.Context, st *LocalStatus)
}

// patroniTime formats a timestamp as Patroni's str(datetime) does (its
// JSON encoder's default=str): six digits of microseconds, or none when
// they are zero, and the offset as +00:00.
func patroniTime(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02 15:04:05-07:00")
	}
	return t.Format("2006-01-02 15:04:05.000000-07:00")
}

// statusDoc builds the /patroni document (Patroni's get_postgresql_status
// plus _write_status_response) from the node's facts.
func statusDoc(f facts) map[string]any {
	st := f.st
	doc := map[string]any{}
	state := string(st.State)
	if st.State == "" {
		state = "unknown"
	}
	if st.Queried {
		if st.PostmasterStartTime.IsZero() {
			doc["postmaster_start_time"] = nil
		} else {
			doc["postmaster_start_time"] = patroniTime(st.PostmasterStartTime)
		}
		doc["server_version"] = st.ServerVersion
		if st.Role == cluster.RolePrimary {
			doc["xlog"] = map[string]any{"location": st.XLogLocation}
		} else {
			var ts any
			if st.ReplayedTimestamp != nil {
				ts = patroniTime(*st.ReplayedTimestamp)
			}
			doc["xlog"] = map[string]any{
				"received_location":  st.ReceivedLocation,
				"replayed_location":  st.ReplayedLocation,
				"replayed_timestamp": ts,
				"paused":             st.ReplayPaused,
			}
		}
		if f.isSyncStandby() {
			doc["sync_standby"] = true
		}
		if st.Timeline > 0 {
			doc["timeline"] = st.Timeline
		}
		if st.Role != cluster.RolePrimary && st.LatestEndLSN > 0 {
			doc["latest_end_lsn"] = st.LatestEndLSN
		}
		if st.ReplicationState != "" {
			doc["replication_state"] = st.ReplicationState
		}
		if len(st.Replication) > 0 {
			doc["replication"] = st.Replication
		}
	} else if st.State == cluster.StateRunning {
		state = "unknown"
	}
	doc["state"] = state
	doc["role"] = string(st.Role)
	if f.paused() {
		doc["pause"] = true
	}
	if !f.dcsOK || f.view.Leader == "" {
		doc["cluster_unlocked"] = true
	}
	var seen int64
	if !st.DCSLastSeen.IsZero() {
		seen = st.DCSLastSeen.Unix()
	}
	doc["dcs_last_seen"] = seen
	if tags := tagMap(st.Tags); len(tags) > 0 {
		doc["tags"] = tags
	}
	if st.SystemIdentifier != "" {
		doc["database_system_identifier"] = st.SystemIdentifier
	}
	if st.PendingRestart || len(st.PendingRestartReason) > 0 {
		doc["pending_restart"] = true
		if len(st.PendingRestartReason) > 0 {
			doc["pending_restart_reason"] = st.PendingRestartReason
		}
	}
	doc["patroni"] = map[string]any{"version": st.Version, "scope": st.Scope, "name": st.Name}
	return doc
}
