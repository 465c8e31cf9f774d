package leader

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func member(name string, role cluster.Role) cluster.Member {
	return cluster.Member{Name: name, ConnURL: "postgres://127.0.0.1:5432/postgres", Role: role, State: cluster.StateRunning}
}

// base is a healthy 3-node cluster seen from replica b: a leads.
func base() Facts {
	return Facts{
		Me: "b",
		View: cluster.View{
			Leader:     "a",
			Initialize: "7300",
			Members:    []cluster.Member{member("a", cluster.RolePrimary), member("b", cluster.RoleReplica), member("c", cluster.RoleReplica)},
			Config:     config.DefaultDynamic(),
			Status:     cluster.Status{Optime: 1000},
		},
		ViewOK:          true,
		LeaderLeaseMine: true,
		Now:             t0,
		LeaseDeadline:   t0.Add(8 * time.Second),
		Local:           Local{Initialized: true, Standby: true, Running: true, InRecovery: true, Timeline: 1, SystemID: "7300", Position: 1000},
		Memory:          Memory{Following: "a"},
		Peers: []Peer{
			{Name: "a", Position: 1000, Running: true},
			{Name: "c", Position: 1000, Running: true, InRecovery: true},
		},
	}
}

// asLeader turns base into the view from a, the leader.
func asLeader(f Facts) Facts {
	f.Me = "a"
	f.Local.Standby, f.Local.InRecovery = false, false
	f.Following = ""
	f.Peers = []Peer{{Name: "b", Position: 1000, Running: true, InRecovery: true}, {Name: "c", Position: 1000, Running: true, InRecovery: true}}
	f.Downstream = map[string]string{"b": "async", "c": "async"}
	return f
}

// noLeader drops the leader key and a's member key (a died).
func noLeader(f Facts) Facts {
	f.View.Leader = ""
	f.View.Members = f.View.Members[1:]
	f.Peers = f.Peers[1:]
	return f
}

func prio(n int) *int { return &n }

// candidateBehind: a stepped down in a switchover to b, its clean stop
// ended its WAL at 1200 (status optime), and b has received up to 1000.
func candidateBehind(f Facts) Facts {
	f = noLeader(f)
	f.View.Failover = &cluster.Failover{Leader: "a", Member: "b"}
	f.View.Status.Optime = 1200
	f.CandidateWaitSince = f.Now.Add(-time.Second)
	return f
}

// diverged: a was promoted at 900 on timeline 1 (now on 2); b, still on
// timeline 1 and not streaming, replayed up to 1000 from the old primary.
func diverged(f Facts) Facts {
	f.View.Members[0].Timeline = 2
	f.View.History = []cluster.HistoryEntry{{Timeline: 1, LSN: 900, NewLeader: "a"}}
	f.Local.Timeline, f.Local.Position, f.Local.Streaming = 1, 1000, false
	return f
}

func TestDecide(t *testing.T) {
	future := t0.Add(time.Hour)
	rows := []struct {
		name   string
		facts  func(Facts) Facts
		want   Kind
		target string
		why    string
	}{
		{"replica following the leader", func(f Facts) Facts { return f }, Nothing, "", "following a"},
		{"leader healthy keeps", asLeader, Keep, "", ""},
		{"leader lease deadline passed fences", func(f Facts) Facts {
			f = asLeader(f)
			f.Now = f.LeaseDeadline
			return f
		}, Fence, "", "lease"},
		{"leader without lease fences", func(f Facts) Facts {
			f = asLeader(f)
			f.LeaseDeadline = time.Time{}
			return f
		}, Fence, "", ""},
		{"unqueryable live primary past the deadline fences", func(f Facts) Facts {
			f = asLeader(f)
			f.Local.Running, f.Local.Alive = false, true
			f.Now = f.LeaseDeadline
			return f
		}, Fence, "", ""},
		{"unqueryable live standby past the deadline is not fenced", func(f Facts) Facts {
			f.Local.Running, f.Local.Alive = false, true
			f.Now = f.LeaseDeadline
			return f
		}, StartReplica, "a", ""},
		{"leader, etcd unreachable, lease still valid keeps", func(f Facts) Facts {
			f = asLeader(f)
			f.ViewOK = false
			return f
		}, Keep, "", "unreachable"},
		{"leader, etcd unreachable, deadline reached fences", func(f Facts) Facts {
			f = asLeader(f)
			f.ViewOK = false
			f.Now = f.LeaseDeadline.Add(time.Millisecond)
			return f
		}, Fence, "", ""},
		{"replica, etcd unreachable, does nothing", func(f Facts) Facts { f.ViewOK = false; return f }, Nothing, "", "unreachable"},
		{"leader shutdown hands over", func(f Facts) Facts { f = asLeader(f); f.ShuttingDown = true; return f }, Handover, "", ""},
		{"replica shutdown", func(f Facts) Facts { f.ShuttingDown = true; return f }, Shutdown, "", ""},
		{"paused does nothing even without leader", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Config.Pause = true
			return f
		}, Nothing, "", "paused"},
		{"paused, named failover candidate acquires", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Config.Pause = true
			f.View.Failover = &cluster.Failover{Member: "b"}
			return f
		}, Acquire, "", "candidate"},
		{"uninitialized cluster bootstraps", func(f Facts) Facts {
			f.View = cluster.View{Config: config.DefaultDynamic()}
			f.Local = Local{}
			return f
		}, Bootstrap, "", ""},
		{"bootstrap race lost waits", func(f Facts) Facts {
			f.View = cluster.View{Config: config.DefaultDynamic(), Bootstrapping: true}
			f.Local = Local{}
			return f
		}, Nothing, "", "bootstrapping"},
		{"nofailover does not bootstrap", func(f Facts) Facts {
			f.View = cluster.View{Config: config.DefaultDynamic()}
			f.Local = Local{}
			f.Tags.NoFailover = true
			return f
		}, Nothing, "", "nofailover"},
		{"leader bootstrapping: others wait before checking their data", func(f Facts) Facts {
			f.View.Initialize, f.View.Bootstrapping = "", true
			f.Local.Running, f.Local.Standby, f.Local.SystemID = false, false, "9999"
			return f
		}, Nothing, "", "bootstrap to complete"},
		{"foreign data dir is left alone", func(f Facts) Facts { f.Local.SystemID = "9999"; return f }, Nothing, "", "another cluster"},
		{"missing data dir clones from leader", func(f Facts) Facts { f.Local = Local{}; return f }, Clone, "a", ""},
		{"missing data dir, leader not running yet, waits", func(f Facts) Facts {
			f.Local = Local{}
			f.View.Members[0].State = cluster.StateStarting
			return f
		}, Nothing, "", "waiting"},
		{"missing data dir, no leader, waits", func(f Facts) Facts { f = noLeader(f); f.Local = Local{}; return f }, Nothing, "", "clone"},
		{"restarted leader daemon adopts its key", func(f Facts) Facts { f = asLeader(f); f.LeaderLeaseMine = false; return f }, AdoptLeader, "", ""},
		{"leader postgres crashed restarts once", func(f Facts) Facts { f = asLeader(f); f.Local.Running = false; return f }, Restart, "", "once"},
		{"leader postgres still down releases", func(f Facts) Facts {
			f = asLeader(f)
			f.Local.Running = false
			f.CrashRestartTried = true
			return f
		}, Release, "", "at once"},
		{"leader holding key with replica running promotes", func(f Facts) Facts {
			f = asLeader(f)
			f.Local.InRecovery = true
			return f
		}, Promote, "", ""},
		{"switchover to a named replica", func(f Facts) Facts {
			f = asLeader(f)
			f.View.Failover = &cluster.Failover{Leader: "a", Member: "c"}
			return f
		}, Switchover, "c", ""},
		{"switchover to any replica", func(f Facts) Facts {
			f = asLeader(f)
			f.View.Failover = &cluster.Failover{Leader: "a"}
			return f
		}, Switchover, "", "candidate b"},
		{"scheduled switchover waits", func(f Facts) Facts {
			f = asLeader(f)
			f.View.Failover = &cluster.Failover{Leader: "a", Member: "c", ScheduledAt: &future}
			return f
		}, Keep, "", ""},
		{"switchover to a nofailover member is refused", func(f Facts) Facts {
			f = asLeader(f)
			f.Peers[1].Tags.NoFailover = true
			f.View.Failover = &cluster.Failover{Leader: "a", Member: "c"}
			return f
		}, ClearFailover, "", "not a running replica"},
		{"failover naming the leader itself is cleared", func(f Facts) Facts {
			f = asLeader(f)
			f.View.Failover = &cluster.Failover{Member: "a"}
			return f
		}, ClearFailover, "", "already leads"},
		{"primary while another leads demotes", func(f Facts) Facts { f.Local.InRecovery = false; f.Local.Standby = false; return f }, Demote, "a", ""},
		{"former primary stopped rewinds", func(f Facts) Facts {
			f.Local.Running, f.Local.InRecovery, f.Local.Standby = false, false, false
			return f
		}, Rewind, "a", ""},
		{"former primary whose rewind failed re-clones", func(f Facts) Facts {
			f.Local.Running, f.Local.Standby = false, false
			f.RewindFailed = true
			return f
		}, Reclone, "a", ""},
		{"cleanly stopped old primary starts as replica without rewind", func(f Facts) Facts {
			f.Local.Running, f.Local.Standby = false, false
			f.CleanStop = true
			return f
		}, StartReplica, "a", ""},
		{"stopped replica starts", func(f Facts) Facts { f.Local.Running = false; return f }, StartReplica, "a", ""},
		{"replica of the old leader follows the new one", func(f Facts) Facts { f.Following = "c"; return f }, Follow, "a", ""},
		{"replica past the fork of the leader's timeline rewinds", diverged, Rewind, "a", "forked"},
		{"switchover to a candidate whose WAL receiver is not connected is refused", func(f Facts) Facts {
			f = asLeader(f)
			f.View.Failover = &cluster.Failover{Leader: "a", Member: "c"}
			delete(f.Downstream, "c")
			return f
		}, ClearFailover, "", "streams from the leader"},
		{"switchover candidate waits for the old leader's last WAL", candidateBehind, Nothing, "", "last WAL"},
		{"switchover candidate with the old leader's last WAL takes the key", func(f Facts) Facts {
			f = candidateBehind(f)
			f.Local.Position = 1200
			return f
		}, Acquire, "", "named"},
		{"switchover candidate gives up after the bound", func(f Facts) Facts {
			f = candidateBehind(f)
			f.CandidateWaitSince = f.Now.Add(-candidateWaitBound)
			return f
		}, ClearFailover, "", "given up"},
		{"manual failover candidate takes the key whatever the optime", func(f Facts) Facts {
			f = candidateBehind(f)
			f.View.Failover.Leader = ""
			return f
		}, Acquire, "", "named"},
		{"replicatefrom a running replica follows it", func(f Facts) Facts { f.Tags.ReplicateFrom = "c"; return f }, Follow, "c", "replicatefrom"},
		{"replicatefrom, already following it", func(f Facts) Facts { f.Tags.ReplicateFrom, f.Following = "c", "c"; return f }, Nothing, "", "following c"},
		{"replicatefrom a stopped member falls back to the leader", func(f Facts) Facts {
			f.Tags.ReplicateFrom, f.Following = "c", "c"
			f.View.Members[2].State = cluster.StateStopped
			return f
		}, Follow, "a", "leader is now a"},
		{"replicatefrom a member that replicates from this one falls back to the leader", func(f Facts) Facts {
			f.Tags.ReplicateFrom = "c"
			f.View.Members[2].Tags.ReplicateFrom = "b"
			return f
		}, Nothing, "", "following a"},
		{"stopped cascading replica starts from its upstream", func(f Facts) Facts {
			f.Tags.ReplicateFrom, f.Local.Running = "c", false
			return f
		}, StartReplica, "c", ""},
		{"empty data dir clones from a replica tagged clonefrom", func(f Facts) Facts {
			f.Local = Local{}
			f.View.Members[2].Tags.CloneFrom = true
			return f
		}, Clone, "c", "clonefrom"},
		{"a stopped clonefrom replica is not a source", func(f Facts) Facts {
			f.Local = Local{}
			f.View.Members[2].Tags.CloneFrom = true
			f.View.Members[2].State = cluster.StateStopped
			return f
		}, Clone, "a", "leader a"},
		{"replica past the fork whose rewind failed re-clones", func(f Facts) Facts { f = diverged(f); f.RewindFailed = true; return f }, Reclone, "a", ""},
		{"replica at the fork point follows", func(f Facts) Facts { f = diverged(f); f.Local.Position = 900; return f }, Nothing, "", "following a"},
		{"replica past the fork but streaming has not diverged", func(f Facts) Facts { f = diverged(f); f.Local.Streaming = true; return f }, Nothing, "", "following a"},
		{"replica on an older timeline without history waits", func(f Facts) Facts { f = diverged(f); f.View.History = nil; return f }, Nothing, "", "following a"},
		{"diverged replica of the old leader rewinds rather than follow", func(f Facts) Facts { f = diverged(f); f.Following = "c"; return f }, Rewind, "a", ""},
		{"leader loss: healthiest replica acquires", noLeader, Acquire, "", "healthiest"},
		{"leader loss: peer ahead wins", func(f Facts) Facts { f = noLeader(f); f.Peers[0].Position = 2000; return f }, Nothing, "", "better candidate"},
		{"leader loss: a peer ahead whose fence refuses does not block", func(f Facts) Facts {
			f = noLeader(f)
			f.Peers[0].Position, f.Peers[0].FenceRefused = 2000, true
			return f
		}, Acquire, "", "healthiest"},
		{"leader loss: tie broken by name", func(f Facts) Facts { f = noLeader(f); f.Me, f.Peers[0].Name = "c", "b"; return f }, Nothing, "", "b is a better"},
		{"leader loss: tie broken by failover_priority", func(f Facts) Facts {
			f = noLeader(f)
			f.Me, f.Peers[0].Name = "c", "b"
			f.Tags.FailoverPriority = prio(5)
			return f
		}, Acquire, "", ""},
		{"leader loss: ahead peer tagged nofailover is ignored", func(f Facts) Facts {
			f = noLeader(f)
			f.Peers[0].Position = 2000
			f.Peers[0].Tags.NoFailover = true
			return f
		}, Acquire, "", ""},
		{"leader loss: stopped peer is ignored", func(f Facts) Facts {
			f = noLeader(f)
			f.Peers[0].Position = 2000
			f.Peers[0].Running = false
			return f
		}, Acquire, "", ""},
		{"leader loss: too far behind the last optime", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Status.Optime = 10 << 20
			return f
		}, Nothing, "", "too far behind"},
		{"leader loss: nofailover never acquires", func(f Facts) Facts { f = noLeader(f); f.Tags.NoFailover = true; return f }, Nothing, "", "never"},
		{"leader loss: failover_priority 0 never acquires", func(f Facts) Facts { f = noLeader(f); f.Tags.FailoverPriority = prio(0); return f }, Nothing, "", "never"},
		{"leader loss: only the sync standby may take it", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Config.SynchronousMode = true
			f.View.Sync = &cluster.Sync{Leader: "a", SyncStandby: "c"}
			return f
		}, Nothing, "", "synchronous"},
		{"leader loss: the sync standby takes it", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Config.SynchronousMode = true
			f.View.Sync = &cluster.Sync{Leader: "a", SyncStandby: f.Me}
			return f
		}, Acquire, "", ""},
		{"leader loss: the sync standby takes it even when a gated peer would win the tie", func(f Facts) Facts {
			f = noLeader(f)
			f.Me, f.Peers[0].Name = "c", "b"
			f.View.Config.SynchronousMode = true
			f.View.Sync = &cluster.Sync{Leader: "a", SyncStandby: "c"}
			return f
		}, Acquire, "", ""},
		{"leader loss: no confirmed sync standby, nobody else takes it", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Config.SynchronousMode = true
			f.View.Sync = &cluster.Sync{Leader: "a"}
			return f
		}, Nothing, "", "no synchronous standby"},
		{"leader loss: stopped node starts read-only first", func(f Facts) Facts { f = noLeader(f); f.Local.Running = false; return f }, StartReplica, "", "position"},
		{"leader loss: a running primary of a peer is not raced", func(f Facts) Facts { f = noLeader(f); f.Peers[0].InRecovery = false; return f }, Nothing, "", "running as a primary"},
		{"failover request: named candidate acquires despite lag", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Status.Optime = 10 << 20
			f.View.Failover = &cluster.Failover{Member: "b"}
			return f
		}, Acquire, "", "candidate"},
		{"failover request: others wait for the candidate", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Failover = &cluster.Failover{Member: "c"}
			return f
		}, Nothing, "", "waiting for failover candidate c"},
		{"switchover: the stepping-down leader does not retake", func(f Facts) Facts {
			f = noLeader(f)
			f.View.Failover = &cluster.Failover{Leader: "b"}
			f.Local.Running = false
			return f
		}, Nothing, "", "stepped down"},
		{"nofailover primary without leader demotes", func(f Facts) Facts {
			f = noLeader(f)
			f.Tags.NoFailover = true
			f.Local.InRecovery = false
			return f
		}, Demote, "", ""},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := Decide(r.facts(base()))
			if got.Kind != r.want || got.Target != r.target {
				t.Fatalf("Decide = %s %q (%s), want %s %q", got.Kind, got.Target, got.Why, r.want, r.target)
			}
			if !strings.Contains(got.Why, r.why) {
				t.Fatalf("why = %q, want it to mention %q", got.Why, r.why)
			}
		})
	}
}

func TestPickSyncStandby(t *testing.T) {
	m := func(name string, pos int64, state cluster.State, tags config.Tags) cluster.Member {
		return cluster.Member{Name: name, Role: cluster.RoleReplica, State: state, XLogLocation: pos, Tags: tags}
	}
	v := cluster.View{Members: []cluster.Member{
		{Name: "a", Role: cluster.RolePrimary, State: cluster.StateRunning},
		m("b", 100, cluster.StateStreaming, config.Tags{}),
		m("c", 200, cluster.StateStreaming, config.Tags{}),
		m("d", 300, cluster.StateStreaming, config.Tags{NoFailover: true}),
		m("e", 400, cluster.StateRunning, config.Tags{}),
		m("f", 500, cluster.StateStreaming, config.Tags{}),
		m("g", 600, cluster.StateStreaming, config.Tags{NoSync: true}),
	}}
	all := map[string]string{"b": "async", "c": "async", "d": "async", "e": "async", "g": "async"} // f is not in pg_stat_replication
	for _, tc := range []struct {
		name, current string
		streaming     map[string]string
		want          string
	}{
		{"furthest ahead eligible streaming replica", "", all, "c"},
		{"the current standby is kept while it streams", "b", all, "b"},
		{"a current standby that stopped streaming is replaced", "e", all, "c"},
		{"only what pg_stat_replication shows counts", "f", all, "c"},
		{"none streaming", "b", map[string]string{}, ""},
		{"a current standby tagged nosync is replaced", "g", all, "c"},
	} {
		var cur []string
		if tc.current != "" {
			cur = []string{tc.current}
		}
		got := pickSyncStandbys(v, "a", cur, tc.streaming, 1)
		if want := []string{tc.want}; (tc.want == "" && len(got) != 0) || (tc.want != "" && !slices.Equal(got, want)) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// synchronous_node_count 2: the current one kept, then the best other.
	if got := pickSyncStandbys(v, "a", []string{"b"}, all, 2); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("two standbys: got %q, want [b c]", got)
	}
}
