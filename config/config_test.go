package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// base is a valid minimal config; cases append or replace lines.
const base = `scope: demo
name: node1
etcd:
  endpoints: ["127.0.0.1:2379"]
postgresql:
  data_dir: /var/lib/pgha/data
`

func TestParseProblems(t *testing.T) {
	fakeBin := t.TempDir()
	for _, b := range RequiredBinaries[:2] {
		os.WriteFile(filepath.Join(fakeBin, b), []byte("#!/bin/sh\n"), 0o755)
	}
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // each must appear in some problem line
	}{
		{"valid minimal", base, nil, nil},
		{"unknown top-level key", base + "scopee: x\n", nil, []string{`scopee: unknown key (did you mean "scope"?)`}},
		{"unknown nested key", base + "restapi:\n  lisen: 1.2.3.4:1\n", nil, []string{`restapi.lisen: unknown key (did you mean "listen"?)`}},
		{"unknown key far from any", base + "zzzzzzzz: 1\n", nil, []string{"zzzzzzzz: unknown key (known keys: bootstrap, ctl, etcd,"}},
		{"wrong type bool", base + "tags:\n  nofailover: maybe\n", nil, []string{"tags.nofailover: wrong type: got str `maybe`, want true or false"}},
		{"wrong type list", base + "postgresql:\n  data_dir: /d\n  pg_hba: 5\n", nil, []string{"postgresql.pg_hba: wrong type"}},
		{"mapping expected", base + "restapi: 5\n", nil, []string{"restapi: want a mapping of keys"}},
		{"bad duration", base + "bootstrap:\n  dcs:\n    loop_wait: soon\n", nil, []string{`bootstrap.dcs.loop_wait: bad duration "soon"`}},
		{"negative duration", base + "bootstrap:\n  dcs:\n    retry_timeout: -3s\n", nil, []string{"bootstrap.dcs.retry_timeout: bad duration"}},
		{"bad size", base + "bootstrap:\n  dcs:\n    maximum_lag_on_failover: 1XB\n", nil, []string{`unknown unit "XB"`}},
		{"port out of range", base + "restapi:\n  listen: 127.0.0.1:70000\n", nil, []string{`restapi.listen: port "70000" out of range`}},
		{"port not a number", base + "pooler:\n  listen: 127.0.0.1:http\n", nil, []string{`pooler.listen: port "http" out of range`}},
		{"not host:port", base + "restapi:\n  listen: localhost\n", nil, []string{`restapi.listen: "localhost" is not host:port`}},
		{"connect address unreachable", base + "restapi:\n  listen: 0.0.0.0:8008\n", nil, []string{`restapi.connect_address: "0.0.0.0:8008" is not an address other nodes can reach`}},
		{"ttl too small", base + "bootstrap:\n  dcs:\n    ttl: 1\n", nil, []string{"bootstrap.dcs.ttl: 1s is too small for loop_wait 1s and retry_timeout 3s: need ttl >= loop_wait + 2*retry_timeout = 7s"}},
		{"ttl too small for custom loop", base + "bootstrap:\n  dcs:\n    ttl: 20s\n    loop_wait: 10\n    retry_timeout: 10\n", nil, []string{"need ttl >= loop_wait + 2*retry_timeout = 30s"}},
		{"missing data_dir", "scope: demo\nname: n\n", nil, []string{"postgresql.data_dir: missing"}},
		{"relative data_dir", "scope: demo\nname: n\npostgresql:\n  data_dir: data\n", nil, []string{`postgresql.data_dir: "data" must be an absolute path`}},
		{"missing scope and name", "postgresql:\n  data_dir: /d\n", nil, []string{"scope: missing", "name: missing"}},
		{"bin_dir without binaries", base + "postgresql:\n  data_dir: /d\n  bin_dir: " + fakeBin + "\n", nil, []string{"postgresql.bin_dir: " + fakeBin + " lacks the Postgres programs initdb, pg_basebackup", "apt-get install postgresql-15"}},
		{"os_user missing", base + "postgresql:\n  data_dir: /d\n  os_user: no-such-user-pgha\n", nil, []string{`postgresql.os_user: OS user "no-such-user-pgha" does not exist`}},
		{"bad yaml", "scope: [\n", nil, []string{"not valid YAML"}},
		{"bad pool mode", base + "pooler:\n  pool_mode: sometimes\n", nil, []string{`pooler.pool_mode: "sometimes" is not session, transaction or statement`}},
		{"embedded etcd ok", base + "etcd:\n  embedded: true\n  endpoints: [\"127.0.0.1:2379\"]\n", nil, nil},
		{"env override wins", base, []string{"PGHA_BOOTSTRAP_DCS_TTL=1"}, []string{"bootstrap.dcs.ttl: 1s is too small"}},
		{"env bad type", base, []string{"PGHA_TAGS_NOFAILOVER=perhaps"}, []string{"PGHA_TAGS_NOFAILOVER: wrong type"}},
		{"env unknown", base, []string{"PGHA_POSTGRESQL_DATADIR=/x"}, []string{"PGHA_POSTGRESQL_DATADIR: unknown environment override"}},
		{"several at once", base + "bogus: 1\nbootstrap:\n  dcs:\n    ttl: 1\n", nil, []string{"bogus: unknown key", "bootstrap.dcs.ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), tt.env)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want problems %q, got none", tt.want)
			}
			if AsProblems(err) == nil {
				t.Fatalf("error is not Problems: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("want a problem containing %q, got:\n%v", w, err)
				}
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	c, err := Parse([]byte(base), []string{
		"PGHA_NAME=node7",
		"PGHA_ETCD_ENDPOINTS=127.0.0.1:2379, 127.0.0.2:2379",
		"PGHA_BOOTSTRAP_DCS_TTL=30s",
		"PGHA_TAGS_FAILOVER_PRIORITY=3",
		"PGHA_POSTGRESQL_AUTHENTICATION_SUPERUSER_PASSWORD=s3cret",
		"OTHER=ignored",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "node7" || len(c.Etcd.Endpoints) != 2 || c.Etcd.Endpoints[1] != "127.0.0.2:2379" {
		t.Errorf("name/endpoints not overridden: %q %q", c.Name, c.Etcd.Endpoints)
	}
	if c.Bootstrap.DCS.TTL.D() != 30*time.Second {
		t.Errorf("ttl = %s", c.Bootstrap.DCS.TTL.D())
	}
	if c.Tags.FailoverPriority == nil || *c.Tags.FailoverPriority != 3 {
		t.Errorf("failover_priority = %v", c.Tags.FailoverPriority)
	}
	if c.PostgreSQL.Authentication.Superuser.Password != "s3cret" {
		t.Errorf("superuser password not overridden")
	}
}

func TestDefaultsAndDerived(t *testing.T) {
	c, err := Parse([]byte(base+"namespace: db\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Bootstrap.DCS
	if d.TTL.D() != 10*time.Second || d.LoopWait.D() != time.Second || d.RetryTimeout.D() != 3*time.Second || d.MaximumLagOnFailover != 1<<20 {
		t.Errorf("dcs defaults = %+v", d)
	}
	if c.Namespace != "/db/" {
		t.Errorf("namespace = %q, want /db/", c.Namespace)
	}
	if c.PostgreSQL.OSUser != "postgres" || c.PostgreSQL.ConnectAddress != c.PostgreSQL.Listen || c.RESTAPI.ConnectAddress != "127.0.0.1:8008" {
		t.Errorf("derived defaults wrong: %+v %+v", c.PostgreSQL, c.RESTAPI)
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{"10": 10 * time.Second, "0.5": 500 * time.Millisecond, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond} {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got.D(), err, want)
		}
	}
	for in, want := range map[string]Size{"1048576": 1 << 20, "1MB": 1 << 20, "16 kB": 16 << 10, "2GiB": 2 << 30, "0": 0} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MB", "-1", "99999999999999999999", "1.5MB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	b, _ := Duration(1500 * time.Millisecond).MarshalJSON()
	if string(b) != "1.5" {
		t.Errorf("Duration JSON = %s, want 1.5 (seconds, as Patroni stores it)", b)
	}
}

func TestSampleConfigIsValid(t *testing.T) {
	if _, err := Load("../testdata/node1.yml"); err != nil {
		t.Fatalf("testdata/node1.yml: %v", err)
	}
}
