package leader

import (
	"slices"
	"testing"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

func TestStreamsFrom(t *testing.T) {
	m := func(name string, role cluster.Role, tags config.Tags) cluster.Member {
		mm := member(name, role)
		mm.Tags = tags
		return mm
	}
	v := cluster.View{Leader: "a", Members: []cluster.Member{
		m("a", cluster.RolePrimary, config.Tags{}),
		m("b", cluster.RoleReplica, config.Tags{}),
		m("c", cluster.RoleReplica, config.Tags{ReplicateFrom: "b"}),
		m("d", cluster.RoleReplica, config.Tags{NoStream: true}),
		m("e", cluster.RoleReplica, config.Tags{ReplicateFrom: "gone"}),
	}}
	for _, tt := range []struct {
		from string
		want []string
	}{
		{"a", []string{"b", "e"}}, // c cascades through b, d does not stream
		{"b", []string{"c"}},
		{"c", nil},
	} {
		if got := streamsFrom(v, tt.from); !slices.Equal(got, tt.want) {
			t.Errorf("streamsFrom(%s) = %v, want %v", tt.from, got, tt.want)
		}
	}
}
