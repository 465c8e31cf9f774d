package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
)

func TestConvertCommand(t *testing.T) {
	if err := config.CheckBinDir(config.DefaultBinDir); err != nil {
		t.Skipf("validation checks the machine's Postgres programs: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("scope: s\nname: n\npostgresql: {data_dir: /d, bin_dir: /nonexistent/bin}\nzookeeper: {hosts: a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string
		wantStderr []string
	}{
		{"patroni sample", []string{"--patroni", "../../testdata/patroni/postgres0.yml"}, 0,
			[]string{"scope: batman", "name: postgresql0", "listen: 127.0.0.1:8008"},
			[]string{"postgresql.pgpass: pgha passes passwords", "etcd: Patroni's etcd section"}},
		{"callbacks, tags, slots, synchronous_node_count", []string{"--patroni", "../../testdata/patroni/features.yml"}, 0,
			[]string{"on_role_change: /etc/patroni/vip.sh --interface eth0", "synchronous_node_count: 2", "plugin: pgoutput",
				"replicatefrom: node2", "datacenter: east"}, nil},
		{"docker env files", []string{"--patroni", "../../testdata/patroni/postgres0.yml",
			"--env-file", "../../testdata/patroni/docker-patroni.env", "--env-file", "../../testdata/patroni/docker-patroni1.env"}, 0,
			[]string{"name: patroni1", "etcd1:2379"}, []string{"PATRONI_admin_PASSWORD"}},
		{"output refused by validation", []string{"--patroni", bad}, 2,
			[]string{"scope: s"}, []string{"zookeeper: pgha keeps its state in etcd", "validate-config: postgresql.bin_dir:"}},
		{"missing file", []string{"--patroni", "/nonexistent/patroni.yml"}, 2, nil, []string{"no such file"}},
		{"pgbouncer alone: the pooler section", []string{"--pgbouncer", "../../internal/convert/testdata/production.ini"}, 0,
			[]string{"pooler:", "pool_mode: "}, nil},
		{"patroni and pgbouncer: one node config", []string{"--patroni", "../../testdata/patroni/postgres0.yml",
			"--pgbouncer", "../../internal/convert/testdata/production.ini"}, 0,
			[]string{"scope: batman", "pooler:", "enabled: true"}, nil},
		{"neither file", nil, 2, nil, []string{"name a --patroni file, a --pgbouncer file, or both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPgha(append([]string{"convert"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
			if strings.Contains(out.String(), "pgpass") {
				t.Errorf("a note went to stdout, which is the config file:\n%s", out.String())
			}
		})
	}
}
