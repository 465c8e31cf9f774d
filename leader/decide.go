package leader

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Kind is what the loop does next.
type Kind string

// Actions Decide can return.
const (
	// Nothing: the node is where it should be, or must wait.
	Nothing Kind = "nothing"
	// Bootstrap: race for the initialize key; the winner runs initdb (or
	// uses the existing data dir), starts Postgres, takes the leader key.
	Bootstrap Kind = "bootstrap"
	// Clone: pg_basebackup from Target into the empty data dir.
	Clone Kind = "clone"
	// Reclone: wipe the data dir and clone from Target again.
	Reclone Kind = "reclone"
	// StartReplica: start Postgres as a standby of Target ("" = a standby
	// with no upstream, read-only while the cluster has no leader).
	StartReplica Kind = "start_replica"
	// Follow: a running replica points primary_conninfo at Target.
	Follow Kind = "follow"
	// Rewind: a former primary is stopped, pg_rewind'ed against Target,
	// and started as its replica.
	Rewind Kind = "rewind"
	// Demote: a running primary that must not be one becomes a standby of
	// Target (stop fast, rewind if needed, start as replica).
	Demote Kind = "demote"
	// Acquire: take the free leader key, then promote.
	Acquire Kind = "acquire"
	// AdoptLeader: the leader key names this member but is bound to the
	// lease of a previous run of the daemon; rebind it to the current one.
	AdoptLeader Kind = "adopt_leader"
	// Promote: this member holds the key; promote its running replica.
	Promote Kind = "promote"
	// Keep: the leader is healthy; publish status (the lease renews itself).
	Keep Kind = "keep"
	// Restart: the leader's Postgres is down; start it once.
	Restart Kind = "restart"
	// Release: the leader's Postgres did not come back; release the key.
	Release Kind = "release"
	// Fence: the lease can no longer be confirmed alive; stop taking
	// writes at once (pause the pooler, stop Postgres immediately).
	Fence Kind = "fence"
	// Switchover: a requested switchover; stop Postgres cleanly and
	// release the key for Target ("" = the healthiest replica).
	Switchover Kind = "switchover"
	// ClearFailover: delete a failover request that cannot be carried out.
	ClearFailover Kind = "clear_failover"
	// Handover: daemon shutdown of the leader; stop Postgres (fast, so
	// replicas receive the shutdown checkpoint) and release the key.
	Handover Kind = "handover"
	// Shutdown: daemon shutdown of a non-leader; stop Postgres.
	Shutdown Kind = "shutdown"
)

// Action is Decide's answer.
type Action struct {
	Kind Kind
	// Target is the member to follow, clone from, or hand over to.
	Target string
	// Why is the reason, for the log line.
	Why string
}

func act(k Kind, target, format string, args ...any) Action {
	return Action{Kind: k, Target: target, Why: fmt.Sprintf(format, args...)}
}

// Local is the local Postgres as the loop last saw it.
type Local struct {
	// Initialized: the data dir holds a cluster (PG_VERSION).
	Initialized bool
	// Standby: standby.signal is present.
	Standby bool
	// Running: the postmaster runs and accepts connections.
	Running bool
	// Alive: the postmaster process exists (even if it could not be
	// queried). A live, unqueried, non-standby server may take writes.
	Alive bool
	// InRecovery: pg_is_in_recovery() (only meaningful when Running).
	InRecovery bool
	Timeline   int64
	SystemID   string
	// Position is a primary's write LSN or a replica's max(receive, replay).
	Position int64
	// ReceiveLSN and ReplayLSN describe a replica.
	ReceiveLSN, ReplayLSN int64
	// Streaming: the WAL receiver streams from an upstream.
	Streaming      bool
	ServerVersion  int
	PendingRestart bool
}

// Peer is what is known of another member's position.
type Peer struct {
	Name     string
	Position int64
	// Running is false when its member key says it is not running.
	Running    bool
	InRecovery bool
	Tags       config.Tags
	// FenceRefused: its fence refused the write permission the last time
	// it tried to lead (watchdog.mode required without a working
	// device), so it cannot lead now; Patroni's watchdog_failed.
	FenceRefused bool
}

// Facts are everything Decide looks at.
type Facts struct {
	Me   string
	Tags config.Tags
	// View is the last snapshot; ViewOK is false when etcd could not be
	// read this round (View is then the last good one, or empty).
	View   cluster.View
	ViewOK bool
	// LeaderLeaseMine: the leader key (if it names Me) is bound to the
	// current lease.
	LeaderLeaseMine bool
	// Now and LeaseDeadline: the lease is surely alive on the server
	// before LeaseDeadline (zero: no lease).
	Now           time.Time
	LeaseDeadline time.Time
	Local         Local
	// Memory is what the loop remembers from earlier cycles (Following,
	// CrashRestartTried, RewindFailed, CleanStop, the backoff of a failing
	// action, ...).
	Memory
	// Peers are the other members' positions (REST API or member keys).
	Peers []Peer
	// ShuttingDown: the daemon is stopping.
	ShuttingDown bool
	// Downstream maps the members streaming from this primary now to
	// their sync_state (pg_stat_replication); gathered on the leader while
	// a switchover is requested, nil otherwise.
	Downstream map[string]string
	// CandidateWaitSince is when this member, named in a switchover whose
	// leader has stepped down, started waiting for the old leader's last
	// WAL; zero when it is not waiting.
	CandidateWaitSince time.Time
}

// candidateWaitBound is how long a switchover candidate waits for the
// old leader's last WAL before it gives the switchover up (the key is
// then free for a normal election, which the old leader, holding all of
// its WAL, wins once it runs as a standby).
const candidateWaitBound = 15 * time.Second

// Decide returns the next action. It is a pure function of its facts.
//
// Failure modes and what it does about each:
//   - Lease cannot be confirmed (etcd unreachable, keepalives unacknowledged)
//     while the local Postgres is a writable primary: Fence once Now reaches
//     LeaseDeadline (send time of the last acknowledged keepalive + ttl -
//     margin), before the server can expire the lease; until then Keep.
//     A live postmaster that cannot be queried on a non-standby data dir
//     counts as writable (MaybeWritable). Fencing holds in pause mode too.
//   - etcd unreachable on a non-primary: Nothing (replicas keep streaming).
//   - Daemon shutdown: the leader hands over (Handover); others Shutdown.
//   - Pause mode: Nothing, except a named failover candidate may Acquire
//     (a crashed Postgres is not restarted, nobody promotes or demotes).
//   - Cluster not initialized: Bootstrap (the initialize race decides who
//     runs initdb); nofailover members and members that lost the race wait.
//   - Bootstrap in progress (initialize key without a system identifier):
//     everyone but the bootstrapping leader waits.
//   - Data dir of another cluster (system identifier differs): Nothing,
//     with a reason; the operator must reinit.
//   - No data dir: Clone from the leader, or wait for one.
//   - Leader key names Me but an old lease (daemon restarted, Postgres
//     adopted): AdoptLeader.
//   - Leader's Postgres down (or up but unqueryable): Restart once, bounded
//     by master_start_timeout; if it is still down, Release at once rather
//     than wait for the lease to expire.
//   - Leader without a data dir (deleted under it): Release.
//   - Leader holds the key with a replica running: Promote.
//   - A switchover/failover request naming another member (or any healthy
//     replica): Switchover when a candidate is eligible (it must stream
//     from the leader right now), else ClearFailover; a scheduled request
//     in the future waits. The candidate takes the key only once it has
//     received the old leader's WAL up to where its clean stop ended it
//     (the status key's optime); it gives up after candidateWaitBound.
//   - Another member leads and the local Postgres is a writable primary
//     (split brain after a partition, or an adopted old primary): Demote.
//   - Another member leads but has not published its address: wait.
//   - A cleanly stopped former leader (switchover, handover) rejoins with
//     StartReplica, without pg_rewind.
//   - Former primary stopped (no standby.signal, not a clean stop): Rewind,
//     or Reclone when the rewind already failed.
//   - Replica stopped: StartReplica; replica following the wrong member:
//     Follow. The member to follow is the leader, or the running member
//     named by the replicatefrom tag (cascading replication); a member
//     without data clones from a running replica tagged clonefrom when
//     there is one.
//   - Running replica that went past the fork point of the leader's
//     timeline (it kept receiving WAL from the old primary after another
//     node was promoted; not streaming, older timeline, position beyond
//     the history entry of its timeline): Rewind, or Reclone when the
//     rewind already failed.
//   - No leader: Acquire only when eligible: not nofailover (nor
//     failover_priority 0), within maximum_lag_on_failover of the last
//     leader optime, no eligible running peer ahead (ties: higher
//     failover_priority, then smaller name), in synchronous mode only the
//     sync standby, and not the member stepping down in a switchover; a
//     named failover candidate takes it regardless of lag. A stopped node
//     starts as a read-only standby first so its position is known.
func Decide(f Facts) Action {
	a := decide(f)
	if f.Backoff.holds(a, f.Now) {
		// The same action failed a moment ago: wait out its backoff
		// instead of retrying at every wake-up (never for fencing).
		return act(Nothing, "", "backing off: %s", f.Backoff.String(f.Now))
	}
	return a
}

func decide(f Facts) Action {
	v := f.View
	local := f.Local
	writable := local.Running && !local.InRecovery
	holdsKey := f.ViewOK && v.Leader == f.Me

	// Rule 1 comes first: a writable primary whose lease may be gone stops.
	// A live postmaster we could not query counts as writable unless its
	// data dir is a standby.
	if MaybeWritable(local) && (f.LeaseDeadline.IsZero() || !f.Now.Before(f.LeaseDeadline)) {
		return act(Fence, "", "cannot confirm the leader lease is alive (last acknowledged keepalive too old); stopping writes before it can expire")
	}
	if f.ShuttingDown {
		if holdsKey || writable {
			return act(Handover, "", "daemon stopping: stop postgres cleanly and release the leader key")
		}
		return act(Shutdown, "", "daemon stopping")
	}
	if !f.ViewOK {
		if writable {
			return act(Keep, "", "etcd unreachable; lease still valid until %s", f.LeaseDeadline.Format(time.RFC3339Nano))
		}
		return act(Nothing, "", "etcd unreachable")
	}

	fo := v.Failover
	if fo != nil && fo.ScheduledAt != nil && f.Now.Before(*fo.ScheduledAt) {
		fo = nil // not due yet
	}

	if v.Paused() {
		if v.Leader == "" && fo != nil && fo.Member == f.Me && local.Running {
			return act(Acquire, "", "paused, but named failover candidate")
		}
		return act(Nothing, "", "cluster paused (maintenance mode)")
	}

	// Not bootstrapped yet.
	if v.Initialize == "" && v.Leader == "" {
		if f.Tags.NoFailover {
			return act(Nothing, "", "waiting for another member to bootstrap (nofailover)")
		}
		if v.Bootstrapping {
			return act(Nothing, "", "another member is bootstrapping")
		}
		return act(Bootstrap, "", "cluster not initialized")
	}
	if v.Bootstrapping && !holdsKey {
		// The system identifier is not known yet: nothing can be checked
		// against it, so nobody clones, rewinds or races meanwhile.
		return act(Nothing, "", "waiting for the bootstrap to complete")
	}
	if local.Initialized && v.Initialize != "" && local.SystemID != "" && local.SystemID != v.Initialize {
		return act(Nothing, "", "data dir belongs to another cluster (system identifier %s, cluster has %s): reinitialize this member", local.SystemID, v.Initialize)
	}

	if holdsKey {
		return decideLeader(f, fo)
	}
	if v.Leader != "" {
		return decideFollower(f)
	}
	return decideNoLeader(f, fo)
}

// MaybeWritable reports whether the local server might accept writes.
func MaybeWritable(l Local) bool {
	return (l.Running && !l.InRecovery) || (l.Alive && !l.Running && !l.Standby)
}

func decideLeader(f Facts, fo *cluster.Failover) Action {
	local := f.Local
	if !f.LeaderLeaseMine {
		return act(AdoptLeader, "", "leader key names this member but is bound to an old lease (daemon restarted)")
	}
	if !local.Initialized {
		return act(Release, "", "leader without a data directory")
	}
	if !local.Running {
		if !f.CrashRestartTried {
			return act(Restart, "", "postgres is down on the leader; restarting it once")
		}
		return act(Release, "", "postgres did not come back after one restart; releasing the leader key at once")
	}
	if local.InRecovery {
		return act(Promote, "", "holding the leader key with a replica running")
	}
	if fo != nil && fo.Member != f.Me && (fo.Leader == "" || fo.Leader == f.Me) {
		cand, why := switchoverCandidate(f, fo.Member)
		if cand == "" {
			return act(ClearFailover, "", "switchover request refused: %s", why)
		}
		return act(Switchover, fo.Member, "switchover requested (candidate %s)", cand)
	}
	if fo != nil && (fo.Member == f.Me || (fo.Leader != "" && fo.Leader != f.Me)) {
		return act(ClearFailover, "", "failover request is moot: %s already leads", f.Me)
	}
	return act(Keep, "", "leader, postgres healthy")
}

// switchoverCandidate returns who could take over: the named member if it
// is running and eligible, else the best eligible running replica.
func switchoverCandidate(f Facts, named string) (string, string) {
	peers := eligiblePeers(f)
	if named != "" {
		for _, p := range peers {
			if p.Name == named {
				return named, ""
			}
		}
		return "", fmt.Sprintf("candidate %s is not a running replica eligible for promotion that streams from the leader", named)
	}
	if len(peers) == 0 {
		return "", "no running replica eligible for promotion streams from the leader"
	}
	sort.Slice(peers, func(i, j int) bool { return better(peers[i], peers[j]) })
	return peers[0].Name, ""
}

// eligiblePeers are the replicas a switchover may hand over to: running,
// promotable, and streaming from this leader right now (a replica whose
// WAL receiver is not connected would miss the last WAL a clean stop
// sends, and one still on an old timeline cannot follow at all).
func eligiblePeers(f Facts) []Peer {
	var out []Peer
	for _, p := range f.Peers {
		if p.Name == f.Me || !p.Running || !p.InRecovery || !cluster.CanPromote(p.Tags) || p.FenceRefused {
			continue
		}
		if _, ok := f.Downstream[p.Name]; !ok {
			continue
		}
		out = append(out, p)
	}
	return out
}

// better orders candidates: position, then failover_priority, then name.
func better(a, b Peer) bool {
	if a.Position != b.Position {
		return a.Position > b.Position
	}
	if cluster.Priority(a.Tags) != cluster.Priority(b.Tags) {
		return cluster.Priority(a.Tags) > cluster.Priority(b.Tags)
	}
	return a.Name < b.Name
}

func decideFollower(f Facts) Action {
	v, local, lead := f.View, f.Local, f.View.Leader
	lm, ok := v.LeaderMember()
	if !ok || lm.ConnURL == "" {
		if local.Running && !local.InRecovery {
			return act(Demote, "", "%s holds the leader key; this node must not be a primary", lead)
		}
		return act(Nothing, "", "leader %s has not published its address yet", lead)
	}
	if !local.Initialized {
		if src := cloneSource(v, f.Me); src != lead {
			return act(Clone, src, "no data directory; cloning from %s (tagged clonefrom)", src)
		}
		if lm.Role != cluster.RolePrimary || lm.State != cluster.StateRunning {
			return act(Nothing, "", "waiting for leader %s to run before cloning", lead)
		}
		return act(Clone, lead, "no data directory; cloning from leader %s", lead)
	}
	// The member to stream from: the leader, or the replica named by
	// the replicatefrom tag (cascading replication).
	up := upstreamOf(v, f.Me, f.Tags)
	if local.Running && !local.InRecovery {
		return act(Demote, lead, "%s holds the leader key; demoting this primary to follow it", lead)
	}
	if !local.Running {
		if !local.Standby && !f.CleanStop {
			if f.RewindFailed {
				return act(Reclone, lead, "pg_rewind against %s failed; re-cloning", lead)
			}
			return act(Rewind, lead, "former primary rejoins %s", lead)
		}
		return act(StartReplica, up, "starting as a replica of %s", up)
	}
	if fork, ok := divergedFrom(v.History, lm, local); ok {
		if f.RewindFailed {
			return act(Reclone, lead, "replica went past the fork of %s's timeline %d and pg_rewind failed; re-cloning", lead, lm.Timeline)
		}
		return act(Rewind, lead, "replica on timeline %d replayed past %s, where %s's timeline forked: rewinding", local.Timeline, cluster.FormatLSN(fork), lead)
	}
	if f.Following != up {
		if up != lead {
			return act(Follow, up, "replicating from %s (replicatefrom)", up)
		}
		return act(Follow, lead, "leader is now %s", lead)
	}
	return act(Nothing, "", "replica following %s", up)
}

// divergedFrom reports whether a running replica holds WAL the leader
// never had: it is on an older timeline than the leader's and its
// position is past the point where that timeline ended in the cluster's
// history (it kept streaming from the old primary after the new one was
// promoted). Such a replica can never stream from the leader: Postgres
// refuses a timeline that forked before its recovery point. While it
// streams it has not diverged; without a history entry for its timeline
// nothing is known.
func divergedFrom(history []cluster.HistoryEntry, lm cluster.Member, local Local) (int64, bool) {
	if !local.Running || !local.InRecovery || local.Streaming || lm.Timeline == 0 || local.Timeline == 0 || local.Timeline >= lm.Timeline {
		return 0, false
	}
	for _, h := range history {
		if h.Timeline == local.Timeline && h.LSN > 0 {
			return h.LSN, max(local.Position, local.ReplayLSN, local.ReceiveLSN) > h.LSN
		}
	}
	return 0, false
}

func decideNoLeader(f Facts, fo *cluster.Failover) Action {
	v, local := f.View, f.Local
	if !local.Initialized {
		return act(Nothing, "", "no leader to clone from")
	}
	if fo != nil && fo.Leader == f.Me {
		if local.Running && !local.InRecovery {
			return act(Demote, "", "stepping down in a switchover")
		}
		return act(Nothing, "", "stepped down in a switchover; waiting for the new leader")
	}
	if fo != nil && fo.Member == f.Me && local.Running {
		// A planned switchover: the old leader recorded where its WAL
		// ended; take over only with all of it, or give up after a bound.
		if need := v.Status.Optime; fo.Leader != "" && need > 0 && local.Position < need {
			if !f.CandidateWaitSince.IsZero() && f.Now.Sub(f.CandidateWaitSince) >= candidateWaitBound {
				return act(ClearFailover, "", "switchover given up: %s's last WAL (up to %s) did not arrive within %s (have %s)",
					fo.Leader, cluster.FormatLSN(need), candidateWaitBound, cluster.FormatLSN(local.Position))
			}
			return act(Nothing, "", "switchover candidate waiting for %s's last WAL (have %s, need %s)", fo.Leader, cluster.FormatLSN(local.Position), cluster.FormatLSN(need))
		}
		return act(Acquire, "", "named failover candidate")
	}
	if !cluster.CanPromote(f.Tags) {
		if local.Running && !local.InRecovery {
			return act(Demote, "", "no leader and this member may not lead (nofailover)")
		}
		return act(Nothing, "", "no leader; this member never takes the leader key (nofailover)")
	}
	if !local.Running {
		return act(StartReplica, "", "no leader; starting read-only to learn this node's position")
	}
	if fo != nil && fo.Member != "" {
		for _, p := range f.Peers {
			if p.Name == fo.Member && p.Running {
				return act(Nothing, "", "waiting for failover candidate %s", fo.Member)
			}
		}
	}
	if syncGated(v, f.Me) {
		if len(v.Sync.Standbys()) == 0 {
			return act(Nothing, "", "synchronous mode: no synchronous standby was confirmed, only %s may take the leader key", v.Sync.Leader)
		}
		return act(Nothing, "", "synchronous mode: only %s may take the leader key", v.Sync.SyncStandby)
	}
	if lag := v.Status.Optime - local.Position; v.Status.Optime > 0 && lag > int64(v.Config.MaximumLagOnFailover) {
		return act(Nothing, "", "too far behind to lead: %d bytes behind the last leader optime (maximum_lag_on_failover %d)", lag, int64(v.Config.MaximumLagOnFailover))
	}
	me := Peer{Name: f.Me, Position: local.Position, Running: true, InRecovery: local.InRecovery, Tags: f.Tags}
	for _, p := range f.Peers {
		if p.Name == f.Me || !p.Running || !cluster.CanPromote(p.Tags) || p.FenceRefused {
			continue // a peer whose fence refuses cannot lead: it must not block others
		}
		if !p.InRecovery {
			return act(Nothing, "", "%s is running as a primary; not competing", p.Name)
		}
		if syncGated(v, p.Name) {
			continue // synchronous mode: it may not take the key, whatever its position
		}
		if better(p, me) {
			return act(Nothing, "", "%s is a better candidate (position %d vs ours %d)", p.Name, p.Position, local.Position)
		}
	}
	return act(Acquire, "", "leader key free and this is the healthiest eligible member")
}

// syncGated reports whether synchronous mode keeps member name from
// taking the leader key: the sync key names a leader, and name is neither
// it nor its confirmed synchronous standby.
func syncGated(v cluster.View, name string) bool {
	return v.Config.SynchronousMode && v.Sync != nil && v.Sync.Leader != "" &&
		!slices.Contains(v.Sync.Standbys(), name) && v.Sync.Leader != name
}
