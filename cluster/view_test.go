package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
)

// TestMemberJSON checks the member key against what Patroni writes and
// patronictl reads: no "tags" key without tags, "pause" only when paused.
func TestMemberJSON(t *testing.T) {
	prio := 2
	tests := []struct {
		m          Member
		want, nope []string
	}{
		{Member{ConnURL: "postgres://h:5432/postgres", State: StateRunning, Role: RolePrimary},
			[]string{`"conn_url":"postgres://h:5432/postgres"`, `"state":"running"`, `"role":"primary"`}, []string{`"tags"`, `"pause"`, `"Tags"`}},
		{Member{Tags: config.Tags{NoFailover: true, FailoverPriority: &prio}, Pause: true},
			[]string{`"tags":{"nofailover":true,"failover_priority":2}`, `"pause":true`}, nil},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.m)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s", b, w)
			}
		}
		for _, n := range tt.nope {
			if strings.Contains(string(b), n) {
				t.Errorf("%s has %s", b, n)
			}
		}
		var back Member
		if err := json.Unmarshal(b, &back); err != nil || back.Pause != tt.m.Pause || back.Tags.NoFailover != tt.m.Tags.NoFailover {
			t.Errorf("round trip of %s: %+v, %v", b, back, err)
		}
	}
}
