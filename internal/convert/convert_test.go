package convert

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/config"
)

const samples = "../../testdata/patroni"

// TestConvertPatroniSamples converts Patroni's own sample configurations
// and checks that pgha accepts the result (config.Parse, the same check
// as pgha validate-config), that the keys carried over arrive where they
// should, and that what could not be carried over is named on a note.
func TestConvertPatroniSamples(t *testing.T) {
	if err := config.CheckBinDir(config.DefaultBinDir); err != nil {
		t.Skipf("validation checks the machine's Postgres programs: %v", err)
	}
	tests := []struct {
		file  string
		env   []string
		check func(t *testing.T, c config.Config)
		notes []string
		// none: the conversion must carry everything (no note at all).
		none bool
	}{
		{file: "postgres0.yml", check: func(t *testing.T, c config.Config) {
			eq(t, "scope", c.Scope, "batman")
			eq(t, "name", c.Name, "postgresql0")
			eq(t, "etcd.endpoints", strings.Join(c.Etcd.Endpoints, ","), "127.0.0.1:2379")
			eq(t, "restapi.listen", c.RESTAPI.Listen, "127.0.0.1:8008")
			eq(t, "postgresql.listen", c.PostgreSQL.Listen, "127.0.0.1:5432")
			eq(t, "postgresql.data_dir", c.PostgreSQL.DataDir, filepath.Join(absSamples(t), "data/postgresql0"))
			eq(t, "superuser", c.PostgreSQL.Authentication.Superuser.Password, "patroni")
			eq(t, "replication", c.PostgreSQL.Authentication.Replication.Username+"/"+c.PostgreSQL.Authentication.Replication.Password, "replicator/rep-pass")
			eq(t, "rewind", c.PostgreSQL.Authentication.Rewind.Username, "rewind_user")
			eq(t, "ttl", c.Bootstrap.DCS.TTL.D(), 30*time.Second)
			eq(t, "loop_wait", c.Bootstrap.DCS.LoopWait.D(), 10*time.Second)
			eq(t, "retry_timeout", c.Bootstrap.DCS.RetryTimeout.D(), 10*time.Second)
			eq(t, "maximum_lag_on_failover", int64(c.Bootstrap.DCS.MaximumLagOnFailover), int64(1048576))
			eq(t, "use_pg_rewind", c.Bootstrap.DCS.PostgreSQL.UsePgRewind, true)
			eq(t, "pg_hba from bootstrap.dcs", strings.Join(c.PostgreSQL.PgHBA, "|"), "host replication replicator 127.0.0.1/32 md5|host all all 0.0.0.0/0 md5")
			eq(t, "initdb", len(c.Bootstrap.Initdb), 2)
			eq(t, "pooler.enabled", c.Pooler.Enabled, false)
			eq(t, "tags (noloadbalance, clonefrom, nostream: false)", c.Tags.Empty(), true)
		}, notes: []string{"etcd: Patroni's etcd section talks to etcd through the v2 API",
			"vip-manager 1.x) need etcd.v2_leader_key: true on every pgha node and etcd started with --enable-v2",
			"postgresql.pgpass:"}},
		{file: "postgres1.yml", check: func(t *testing.T, c config.Config) {
			eq(t, "name", c.Name, "postgresql1")
			eq(t, "restapi.listen", c.RESTAPI.Listen, "127.0.0.1:8009")
			eq(t, "postgresql.listen", c.PostgreSQL.Listen, "127.0.0.1:5433")
		}, notes: []string{"postgresql.pgpass:"}},
		{file: "postgres2.yml", check: func(t *testing.T, c config.Config) {
			eq(t, "restapi.authentication", c.RESTAPI.Authentication.Username+"/"+c.RESTAPI.Authentication.Password, "username/password")
			eq(t, "postgresql.listen", c.PostgreSQL.Listen, "127.0.0.1:5434")
		}},
		{file: "postgres0.yml", env: []string{"docker-patroni.env", "docker-patroni1.env"}, check: func(t *testing.T, c config.Config) {
			eq(t, "scope", c.Scope, "demo")
			eq(t, "name", c.Name, "patroni1")
			eq(t, "namespace", c.Namespace, "/service/")
			eq(t, "etcd.endpoints", strings.Join(c.Etcd.Endpoints, ","), "etcd1:2379,etcd2:2379,etcd3:2379")
			eq(t, "restapi.listen", c.RESTAPI.Listen, "0.0.0.0:8008")
			eq(t, "restapi.connect_address", c.RESTAPI.ConnectAddress, "172.18.0.3:8008")
			eq(t, "restapi.authentication", c.RESTAPI.Authentication.Username, "admin")
			eq(t, "postgresql.connect_address", c.PostgreSQL.ConnectAddress, "172.18.0.3:5432")
			eq(t, "postgresql.data_dir", c.PostgreSQL.DataDir, "/home/postgres/data")
			eq(t, "superuser", c.PostgreSQL.Authentication.Superuser.Password, "postgres")
			eq(t, "replication", c.PostgreSQL.Authentication.Replication.Password, "replicate")
		}, notes: []string{"etcd: both etcd (v2) and etcd3 are set: used etcd3", "PATRONI_admin_PASSWORD: bootstrap users"}},
		{file: "kubernetes-patroni.yml", env: []string{"kubernetes.env"}, check: func(t *testing.T, c config.Config) {
			eq(t, "scope", c.Scope, "patronidemo")
			eq(t, "name", c.Name, "patronidemo-0")
			eq(t, "restapi.listen", c.RESTAPI.Listen, "0.0.0.0:8008")
			eq(t, "allow_unauthenticated_writes", c.RESTAPI.AllowUnauthenticatedWrites, true)
			eq(t, "postgresql.listen", c.PostgreSQL.Listen, "0.0.0.0:5432")
			eq(t, "postgresql.connect_address", c.PostgreSQL.ConnectAddress, "10.244.0.12:5432")
			eq(t, "replication user", c.PostgreSQL.Authentication.Replication.Username, "standby")
			eq(t, "initdb", len(c.Bootstrap.Initdb), 5)
		}, notes: []string{"kubernetes: pgha keeps its state in etcd (v3 API) only", "restapi.authentication: not set while restapi.listen 0.0.0.0:8008"}},
		{file: "features.yml", check: func(t *testing.T, c config.Config) {
			cb := c.PostgreSQL.Callbacks
			for _, x := range []struct{ key, got string }{{"on_start", cb.OnStart}, {"on_stop", cb.OnStop},
				{"on_restart", cb.OnRestart}, {"on_reload", cb.OnReload}} {
				eq(t, "postgresql.callbacks."+x.key, x.got, "/etc/patroni/callback.sh")
			}
			eq(t, "postgresql.callbacks.on_role_change", cb.OnRoleChange, "/etc/patroni/vip.sh --interface eth0")
			prio := 2
			deepEq(t, "tags", c.Tags, config.Tags{NoLoadBalance: true, FailoverPriority: &prio, CloneFrom: true, NoSync: true,
				ReplicateFrom: "node2", Other: map[string]any{"datacenter": "east", "rack": 7}})
			d := c.Bootstrap.DCS
			eq(t, "synchronous_mode", d.SynchronousMode, true)
			eq(t, "synchronous_node_count", d.SynchronousNodeCount, 2)
			deepEq(t, "slots", d.Slots, map[string]config.Slot{"backup_standby": {Type: "physical"},
				"dr_site": {Type: "physical"}, "cdc": {Type: "logical", Database: "app", Plugin: "pgoutput"}})
			deepEq(t, "ignore_slots", d.IgnoreSlots, []config.IgnoreSlot{
				{Name: "debezium", Type: "logical", Database: "app", Plugin: "pgoutput"}, {Plugin: "wal2json"}})
		}, none: true},
		{file: "debian-15-main.yml", check: func(t *testing.T, c config.Config) {
			eq(t, "scope", c.Scope, "15-main")
			eq(t, "namespace", c.Namespace, "/postgresql-common/")
			eq(t, "etcd.endpoints", len(c.Etcd.Endpoints), 3)
			eq(t, "postgresql.listen", c.PostgreSQL.Listen, "*:5432")
			eq(t, "postgresql.data_dir", c.PostgreSQL.DataDir, "/var/lib/postgresql/15/main")
			eq(t, "use_slots", c.Bootstrap.DCS.PostgreSQL.UseSlots, true)
			eq(t, "logging_collector", c.PostgreSQL.Parameters["logging_collector"], any("on"))
		}, notes: []string{
			"postgresql.authentication.superuser.password: empty",
			"postgresql.pg_clonecluster: replica creation method pg_clonecluster is not supported",
			"postgresql.config_dir:", "postgresql.use_unix_socket:", "bootstrap.dcs.check_timeline:",
			"bootstrap.pg_createcluster: custom bootstrap methods are not supported",
		}},
	}
	for _, tt := range tests {
		name := strings.Join(append([]string{tt.file}, tt.env...), "+")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(samples, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			opt := Options{Source: tt.file, BaseDir: absSamples(t), Hostname: "pg-test"}
			for _, f := range tt.env {
				lines, err := ReadEnvFile(filepath.Join(samples, f))
				if err != nil {
					t.Fatal(err)
				}
				opt.Env = append(opt.Env, lines...)
			}
			res, err := Convert(data, opt)
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			c, err := config.Parse(withBinDir(t, res.YAML), nil)
			if err != nil {
				t.Fatalf("the converted file does not validate:\n%v\n--- file:\n%s", err, res.YAML)
			}
			tt.check(t, c)
			all := notesText(res.Notes)
			for _, w := range tt.notes {
				if !strings.Contains(all, w) {
					t.Errorf("notes lack %q:\n%s", w, all)
				}
			}
			if tt.none && len(res.Notes) > 0 {
				t.Errorf("keys were left out:\n%s", all)
			}
			for _, n := range res.Notes {
				if n.Key == "" || n.Reason == "" || strings.Contains(n.Reason, "\n") {
					t.Errorf("note %q is not one line naming a key and a reason", n)
				}
				if strings.Contains(n.Reason, "not supported yet") {
					t.Errorf("note %q says a key is not supported yet: check it against the config package", n)
				}
			}
		})
	}
}

// withBinDir points postgresql.bin_dir at this machine's Postgres, as a
// converted file names the source machine's.
func withBinDir(t *testing.T, y []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		t.Fatalf("converted output is not YAML: %v\n%s", err, y)
	}
	pg, _ := m["postgresql"].(map[string]any)
	if pg == nil {
		pg = map[string]any{}
		m["postgresql"] = pg
	}
	pg["bin_dir"] = config.DefaultBinDir
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func absSamples(t *testing.T) string {
	t.Helper()
	a, err := filepath.Abs(samples)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func notesText(ns []Note) string {
	var b strings.Builder
	for _, n := range ns {
		b.WriteString(n.String() + "\n")
	}
	return b.String()
}

func deepEq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
