package leader

import (
	"testing"

	"github.com/pgha/pgha/cluster"
)

func TestRoutingKeyIgnoresPositions(t *testing.T) {
	base := func() cluster.View {
		return cluster.View{Leader: "a", Members: []cluster.Member{
			{Name: "a", Role: cluster.RolePrimary, State: cluster.StateRunning, ConnURL: "postgres://h:1/postgres", XLogLocation: 10},
			{Name: "b", Role: cluster.RoleReplica, State: cluster.StateStreaming, ConnURL: "postgres://h:2/postgres", XLogLocation: 9},
		}}
	}
	same := base()
	same.Members[0].XLogLocation, same.Members[1].ReplayLSN, same.Status.Optime = 99, 98, 99
	if routingKey(same) != routingKey(base()) {
		t.Fatal("a position change counts as a routing change")
	}
	for name, edit := range map[string]func(*cluster.View){
		"leader":        func(v *cluster.View) { v.Leader = "b" },
		"role":          func(v *cluster.View) { v.Members[1].Role = cluster.RolePrimary },
		"state":         func(v *cluster.View) { v.Members[1].State = cluster.StateStopped },
		"address":       func(v *cluster.View) { v.Members[1].ConnURL = "postgres://h:3/postgres" },
		"noloadbalance": func(v *cluster.View) { v.Members[1].Tags.NoLoadBalance = true },
		"member gone":   func(v *cluster.View) { v.Members = v.Members[:1] },
		"pause":         func(v *cluster.View) { v.Config.Pause = true },
		"failover":      func(v *cluster.View) { v.Failover = &cluster.Failover{Member: "b"} },
	} {
		v := base()
		edit(&v)
		if routingKey(v) == routingKey(base()) {
			t.Errorf("%s change not seen", name)
		}
	}
}
