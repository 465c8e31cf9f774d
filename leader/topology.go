package leader

import (
	"slices"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Who streams from whom, and who clones from whom, from the tags in the
// members' keys (Patroni's replicatefrom, nostream and clonefrom).

// usableSource reports whether member m can serve WAL or a base backup:
// it runs (as primary or replica) and published its address.
func usableSource(m cluster.Member) bool {
	running := m.State == cluster.StateRunning || m.State == cluster.StateStreaming
	return running && m.ConnURL != "" && (m.Role == cluster.RolePrimary || m.Role == cluster.RoleReplica)
}

// upstreamOf is the member that member me (with tags) streams from: the
// one its replicatefrom tag names when that member can serve (and does
// not itself stream from me), else the leader; "" without a leader.
func upstreamOf(v cluster.View, me string, tags config.Tags) string {
	if rf := tags.ReplicateFrom; rf != "" && rf != me && rf != v.Leader {
		if m, ok := v.Member(rf); ok && usableSource(m) && m.Tags.ReplicateFrom != me {
			return rf
		}
	}
	return v.Leader
}

// streamsFrom lists the members that stream from member from through a
// slot of theirs: every other member not tagged nostream whose upstream
// is from. On the leader these are the replicas that do not cascade.
func streamsFrom(v cluster.View, from string) []string {
	var out []string
	for _, m := range v.Members {
		if m.Name == from || m.Tags.NoStream {
			continue
		}
		if upstreamOf(v, m.Name, m.Tags) == from {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// cloneSource is where a member without data clones from: a running
// member tagged clonefrom (the first by name), else the leader.
func cloneSource(v cluster.View, me string) string {
	for _, m := range v.Members {
		if m.Name != me && m.Name != v.Leader && m.Tags.CloneFrom && usableSource(m) && m.Role == cluster.RoleReplica {
			return m.Name
		}
	}
	return v.Leader
}
