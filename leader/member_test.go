package leader

import (
	"testing"

	"github.com/pgha/pgha/cluster"
)

func TestNoteEvent(t *testing.T) {
	type obs struct {
		running bool
		role    cluster.Role
	}
	const p, r, d = cluster.RolePrimary, cluster.RoleReplica, cluster.RoleDemoted
	for _, tt := range []struct {
		name string
		seq  []obs
		want []string
	}{
		{"adopting a running primary is no start", []obs{{true, p}, {true, p}}, nil},
		{"a stopped node starting as replica", []obs{{false, r}, {true, r}}, []string{"started replica"}},
		{"promotion", []obs{{true, r}, {true, p}}, []string{"role_changed primary"}},
		{"demotion in one step", []obs{{true, p}, {true, r}}, []string{"role_changed replica"}},
		{"switchover: stop, then start as replica", []obs{{true, p}, {false, d}, {true, r}}, []string{"stopped primary", "role_changed replica"}},
		{"crash and restart in place", []obs{{true, p}, {false, d}, {true, p}}, []string{"stopped primary", "started primary"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			l := &Loop{opt: Options{OnEvent: func(e PostgresEvent, role cluster.Role) { got = append(got, string(e)+" "+string(role)) }}}
			for _, o := range tt.seq {
				l.noteEvent(o.running, o.role)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("events %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("events %q, want %q", got, tt.want)
				}
			}
		})
	}
}
