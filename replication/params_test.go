package replication

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestCheckWithoutANamedSetting: when the configuration does not load
// and Postgres names no cluster setting, the cluster settings that
// changed since the last configuration that loaded are dropped first,
// then all of them; what still does not load is the node's own problem
// and an error.
func TestCheckWithoutANamedSetting(t *testing.T) {
	dir, _ := confDir(t)
	in := confInstance(t, dir)
	in.SetClusterParameters(map[string]any{"work_mem": "8MB"})
	if err := in.writeConfig(dir, nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.goodCluster, map[string]string{"work_mem": "8MB"}) {
		t.Fatalf("last good cluster parameters: %v", in.goodCluster)
	}

	in.cluster = map[string]string{"work_mem": "8MB", "temp_buffers": "16MB"}
	if got := in.dropUnproven(); !reflect.DeepEqual(got, []string{"temp_buffers"}) {
		t.Fatalf("dropped %v, want the one that changed", got)
	}
	if got := in.dropUnproven(); !reflect.DeepEqual(got, []string{"work_mem"}) || len(in.cluster) != 0 {
		t.Fatalf("dropped %v (left %v), want the rest", got, in.cluster)
	}
	if !reflect.DeepEqual(in.rejected, map[string]string{"temp_buffers": "16MB", "work_mem": "8MB"}) {
		t.Fatalf("rejected %v", in.rejected)
	}

	// The node's own postgresql.conf is broken: no cluster setting is to
	// blame, every one is tried away, then the check fails.
	in = confInstance(t, dir)
	in.SetClusterParameters(map[string]any{"work_mem": "8MB", "temp_buffers": "16MB"})
	conf := filepath.Join(dir, "postgresql.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, append([]byte("this is not a setting\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	err = in.writeConfig(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "do not load, even without the cluster's parameters") || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("writeConfig with a broken postgresql.conf: %v", err)
	}
	if len(in.cluster) != 0 {
		t.Fatalf("cluster parameters left: %v", in.cluster)
	}
	// Rejected values stay out until they change.
	in.SetClusterParameters(map[string]any{"work_mem": "8MB", "temp_buffers": "32MB"})
	if !maps.Equal(in.cluster, map[string]string{"temp_buffers": "32MB"}) {
		t.Fatalf("after a change, cluster parameters are %v", in.cluster)
	}
}

// TestSetClusterParameters: names fold to lower case; pgha's own
// settings, nil values and settings that cannot be written are left
// out; the node file wins except for the settings a standby needs at
// least as high as its primary's.
func TestSetClusterParameters(t *testing.T) {
	dir, _ := confDir(t)
	cfg := confInstance(t, dir).cfg
	cfg.Parameters = map[string]any{"Work_Mem": "4MB", "max_connections": 50}
	in, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.SetClusterParameters(map[string]any{"WORK_MEM": "8MB", "Max_Connections": 60, "Port": 1, "primary_conninfo": "host=evil",
		"shared_buffers": nil, "bad name": 1, "log_line_prefix": "a\nb", "Include": "/etc/shadow", "random_page_cost": 1.5, "jit": false})
	want := map[string]string{"work_mem": "8MB", "max_connections": "60", "random_page_cost": "1.5", "jit": "off"}
	if !maps.Equal(in.cluster, want) {
		t.Fatalf("cluster parameters %v, want %v", in.cluster, want)
	}
	in.confMu.Lock()
	p := in.parameters(nil)
	in.confMu.Unlock()
	if p["work_mem"] != "4MB" || p["max_connections"] != "60" || p["port"] != "5432" || p["jit"] != "off" {
		t.Fatalf("parameters: %v", p)
	}
	if _, ok := p["primary_conninfo"]; ok {
		t.Fatal("primary_conninfo on a primary")
	}
	for k := range p {
		if k != strings.ToLower(k) {
			t.Fatalf("parameter %q is not folded", k)
		}
	}
	// The node file is checked when the Instance is made.
	cfg.Parameters = map[string]any{"work_mem\nport": 1}
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "is not a setting name") {
		t.Fatalf("New with a bad parameter name: %v", err)
	}
}
