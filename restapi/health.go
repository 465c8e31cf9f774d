package restapi

import (
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// facts is everything a health answer depends on.
type facts struct {
	st    LocalStatus
	view  cluster.View
	dcsOK bool
	now   time.Time
}

func (f facts) paused() bool { return f.view.Paused() }

// leaderOptime is Patroni's max(cluster.status.last_lsn, latest_end_lsn).
func (f facts) leaderOptime() int64 {
	var o int64
	if f.dcsOK {
		o = f.view.Status.Optime
	}
	return max(o, f.st.LatestEndLSN)
}

// isSyncStandby reports whether this node is named in the sync key.
func (f facts) isSyncStandby() bool {
	if !f.dcsOK || !f.view.Config.SynchronousMode || f.view.Sync == nil || f.st.Role != cluster.RoleReplica {
		return false
	}
	for _, n := range strings.Split(f.view.Sync.SyncStandby, ",") {
		if strings.TrimSpace(n) == f.st.Name {
			return true
		}
	}
	return false
}

// parseLag reads a lag query value as Patroni's parse_int(value, 'B'):
// bytes or a unit such as 16MB. ok is false when absent or unparsable, in
// which case Patroni ignores the limit.
func parseLag(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	n, err := config.ParseSize(v)
	if err != nil {
		return 0, false
	}
	return int64(n), true
}

// healthCode answers a role health check exactly as Patroni's do_GET does:
// 200 or 503 for path and query given the node's facts.
//
//   - / /primary /master /read-write: 200 when this node holds the leader key
//     (with a valid lease) as a primary; with etcd lost and the cluster
//     paused, when the local Postgres is a primary.
//   - /leader: the leader key holder (primary or standby leader).
//   - /standby-leader: the leader of a standby cluster (pgha has none; 503
//     unless paused without etcd and the local role is standby_leader).
//   - /replica: a running replica, not tagged noloadbalance, within ?lag= of
//     the leader's optime, in ?replication_state= when given.
//   - /read-only: the primary or a healthy replica.
//   - /sync /synchronous, /async /asynchronous, /read-only-sync: by the sync
//     key; only while etcd is reachable.
//   - /health: Postgres is running, whatever its role.
//   - ?tag_<key>=<value> must match the node's tags on every path but the
//     leader ones.
func healthCode(path string, q url.Values, f facts) int {
	if path == "/" || path == "" {
		path = "/primary"
	}
	st := f.st
	maxLag := int64(math.MaxInt64)
	if v, ok := parseLag(q.Get("lag")); ok {
		maxLag = v
	}
	optime := f.leaderOptime()
	lagging := optime > 0 && maxLag < math.MaxInt64-st.ReplayedLocation && optime > st.ReplayedLocation+maxLag
	wantState := q.Get("replication_state")
	stateMatches := wantState == "" || st.ReplicationState == wantState
	// A running Postgres that could not be queried is "unknown" to Patroni.
	running := st.State == cluster.StateRunning && st.Queried

	replica := 503
	if !st.Tags.NoLoadBalance && !lagging && st.Role == cluster.RoleReplica && running && stateMatches {
		replica = 200
	}
	leader, primary, standbyLeader := 503, 503, 503
	switch {
	case !f.dcsOK && f.paused():
		if st.Role == cluster.RolePrimary || st.Role == cluster.RoleStandbyLeader {
			leader = 200
		}
		if st.Role == cluster.RolePrimary {
			primary = 200
		}
		if st.Role == cluster.RoleStandbyLeader {
			standbyLeader = 200
		}
	case st.IsLeader:
		leader, primary = 200, 200
	}

	code := 503
	ignoreTags := false
	switch {
	case strings.Contains(path, "standby_leader") || strings.Contains(path, "standby-leader"):
		code, ignoreTags = standbyLeader, true
	case strings.Contains(path, "leader"):
		code, ignoreTags = leader, true
	case strings.Contains(path, "master") || strings.Contains(path, "primary") || strings.Contains(path, "read-write"):
		code, ignoreTags = primary, true
	case strings.Contains(path, "replica"):
		code = replica
	case strings.Contains(path, "read-only") && !strings.Contains(path, "sync") && !strings.Contains(path, "quorum"):
		code = replica
		if primary == 200 || standbyLeader == 200 {
			code = 200
		}
	case strings.Contains(path, "health"):
		if running {
			code = 200
		}
	case f.dcsOK:
		sync := f.isSyncStandby()
		switch path {
		case "/sync", "/synchronous":
			if sync {
				code = replica
			}
		case "/async", "/asynchronous":
			if !sync {
				code = replica
			}
		case "/read-only-sync", "/read-only-synchronous":
			if primary == 200 || standbyLeader == 200 {
				code = 200
			} else if sync {
				code = replica
			}
		}
	}
	if !ignoreTags && code == 200 && !tagsMatch(q, st.Tags) {
		code = 503
	}
	return code
}

// tagsMatch checks every tag_<key>=<value> query parameter against the
// node's tags; a tag the node does not have never matches. Non-string tag
// values compare as Python's str(value).lower() ("true", "1").
func tagsMatch(q url.Values, tags config.Tags) bool {
	var have map[string]any
	for k, vs := range q {
		name, ok := strings.CutPrefix(k, "tag_")
		if !ok {
			continue
		}
		if have == nil {
			have = tagMap(tags)
		}
		v, ok := have[name]
		if !ok || v == nil {
			return false
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		default:
			b, _ := json.Marshal(x)
			s = strings.ToLower(string(b))
		}
		if len(vs) == 0 || s != vs[0] {
			return false
		}
	}
	return true
}

// tagMap returns the tags as Patroni's tag dictionary (only set tags).
func tagMap(tags config.Tags) map[string]any {
	m := map[string]any{}
	b, err := json.Marshal(tags)
	if err != nil {
		return m
	}
	_ = json.Unmarshal(b, &m)
	return m
}

// liveness is Patroni's /liveness: the HA loop ran within ttl (twice ttl
// on a replica), or the cluster is paused.
func liveness(f facts, started time.Time) int {
	if f.paused() {
		return 200
	}
	ttl := f.view.Config.TTL.D()
	if ttl <= 0 {
		ttl = config.DefaultDynamic().TTL.D()
	}
	threshold := 2 * ttl
	if f.st.Role == cluster.RolePrimary && f.st.State == cluster.StateRunning {
		threshold = ttl
	}
	last := f.st.LastLoop
	if last.Before(started) {
		last = started
	}
	if last.Add(threshold).After(f.now) {
		return 200
	}
	return 503
}

// readiness is Patroni's /readiness: "" when ready, else why not.
func readiness(q url.Values, f facts) string {
	st := f.st
	if st.IsLeader {
		return ""
	}
	if st.State != cluster.StateRunning {
		return "PostgreSQL is not running"
	}
	if st.ReplicationState != "streaming" {
		return "PostgreSQL replication state is not streaming"
	}
	if !f.dcsOK && st.LatestEndLSN == 0 {
		return "DCS is not accessible"
	}
	optime := f.leaderOptime()
	mode, loc := "apply", st.ReplayedLocation
	if q.Get("mode") == "write" {
		mode, loc = "write", st.ReceivedLocation
	}
	lag := optime - loc
	maxLag, ok := parseLag(q.Get("lag"))
	if !ok {
		maxLag = int64(f.view.Config.MaximumLagOnFailover)
		if maxLag <= 0 {
			maxLag = int64(config.DefaultDynamic().MaximumLagOnFailover)
		}
	}
	if lag > maxLag {
		return "Replication " + mode + " lag " + itoa(lag) + " exceeds maximum allowable " + itoa(maxLag)
	}
	return ""
}
