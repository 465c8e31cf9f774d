package restapi

import (
	"sort"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
)

// ClusterDoc is GET /cluster, Patroni's cluster_as_json.
type ClusterDoc struct {
	Members             []MemberDoc          `json:"members"`
	Scope               string               `json:"scope"`
	Pause               bool                 `json:"pause,omitempty"`
	ScheduledSwitchover *ScheduledSwitchover `json:"scheduled_switchover,omitempty"`
}

// ScheduledSwitchover describes a pending scheduled switchover.
type ScheduledSwitchover struct {
	At   string `json:"at"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// MemberDoc is one member of GET /cluster. The LSN fields are "X/Y"
// strings or "unknown"; the lag fields bytes or "unknown"; both are absent
// for the leader.
type MemberDoc struct {
	Name           string         `json:"name"`
	Role           string         `json:"role"`
	State          string         `json:"state"`
	APIURL         string         `json:"api_url"`
	Host           string         `json:"host,omitempty"`
	Port           int            `json:"port,omitempty"`
	Timeline       int64          `json:"timeline,omitempty"`
	PendingRestart bool           `json:"pending_restart,omitempty"`
	Tags           map[string]any `json:"tags,omitempty"`
	ReceiveLSN     any            `json:"receive_lsn,omitempty"`
	ReceiveLag     any            `json:"receive_lag,omitempty"`
	ReplayLSN      any            `json:"replay_lsn,omitempty"`
	ReplayLag      any            `json:"replay_lag,omitempty"`
	LSN            any            `json:"lsn,omitempty"`
	Lag            any            `json:"lag,omitempty"`
}

// FormatLSN writes a byte position as Postgres does ("0/3000060").
func FormatLSN(lsn int64) string { return cluster.FormatLSN(lsn) }

// HostPort extracts host and port from a member's conn_url
// (postgres://host:port/db); port is 0 when absent.
func HostPort(connURL string) (string, int) {
	e, err := cluster.ParseConnURL(connURL)
	if err != nil {
		return "", 0
	}
	return e.Host, e.Port
}

// syncNames lists the members named in the sync key.
func syncNames(v cluster.View) map[string]bool {
	out := map[string]bool{}
	if !v.Config.SynchronousMode || v.Sync == nil {
		return out
	}
	for _, n := range strings.Split(v.Sync.SyncStandby, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out[n] = true
		}
	}
	return out
}

// NewClusterDoc renders a view as Patroni's /cluster document.
func NewClusterDoc(v cluster.View) ClusterDoc {
	doc := ClusterDoc{Members: []MemberDoc{}, Scope: v.Scope, Pause: v.Paused()}
	sync := syncNames(v)
	optime := v.Status.Optime
	for _, m := range v.Members {
		role := "replica"
		switch {
		case m.Name == v.Leader:
			role = "leader"
		case sync[m.Name]:
			role = "sync_standby"
		}
		state := string(m.State)
		if role != "leader" && m.ReplicationState != "" {
			state = m.ReplicationState
		}
		md := MemberDoc{Name: m.Name, Role: role, State: state, APIURL: m.APIURL,
			Timeline: m.Timeline, PendingRestart: m.PendingRestart}
		md.Host, md.Port = HostPort(m.ConnURL)
		if tags := tagMap(m.Tags); len(tags) > 0 {
			md.Tags = tags
		}
		if m.Name != v.Leader {
			md.ReceiveLSN, md.ReceiveLag = lsnLag(optime, m.ReceiveLSN)
			md.ReplayLSN, md.ReplayLag = lsnLag(optime, m.ReplayLSN)
			md.LSN, md.Lag = lsnLag(optime, m.XLogLocation)
		}
		doc.Members = append(doc.Members, md)
	}
	sort.Slice(doc.Members, func(i, j int) bool { return doc.Members[i].Name < doc.Members[j].Name })
	if f := v.Failover; f != nil && f.ScheduledAt != nil {
		doc.ScheduledSwitchover = &ScheduledSwitchover{At: f.ScheduledAt.Format(time.RFC3339), From: f.Leader, To: f.Member}
	}
	return doc
}

func lsnLag(optime, lsn int64) (any, any) {
	if lsn == 0 {
		return "unknown", "unknown"
	}
	if optime >= lsn {
		return FormatLSN(lsn), optime - lsn
	}
	return FormatLSN(lsn), int64(0)
}

// historyDoc renders the history key as Patroni's list of
// [timeline, lsn, reason, timestamp, new_leader].
func historyDoc(v cluster.View) [][]any {
	out := [][]any{}
	for _, h := range v.History {
		ts := ""
		if !h.Timestamp.IsZero() {
			ts = isoformat(h.Timestamp)
		}
		out = append(out, []any{h.Timeline, h.LSN, h.Reason, ts, h.NewLeader})
	}
	return out
}

// isoformat writes a timestamp as Python's datetime.isoformat(), as
// Patroni writes history: six-digit microseconds (none when zero) and a
// +00:00 offset, never Z.
func isoformat(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05-07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000-07:00")
}
