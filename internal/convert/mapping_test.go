package convert

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/config"
)

// convertMap converts a Patroni YAML snippet and returns the output as a
// generic map plus the notes.
func convertMap(t *testing.T, in string, env ...string) (map[string]any, string) {
	t.Helper()
	res, err := Convert([]byte(in), Options{Hostname: "pg-test", BaseDir: "/srv", Env: env})
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(res.YAML, &m); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, res.YAML)
	}
	return m, notesText(res.Notes)
}

// at reads a dotted path from a converted map.
func at(m map[string]any, path string) any {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func TestListenMapping(t *testing.T) {
	tests := []struct {
		in, key, want, note string
	}{
		{"restapi: {listen: '0.0.0.0:8008', authentication: {username: u, password: p}}", "restapi.listen", "0.0.0.0:8008", ""},
		{"restapi: {listen: '*:8008', authentication: {username: u, password: p}}", "restapi.listen", ":8008", ""},
		{"restapi: {listen: ':8008', authentication: {username: u, password: p}}", "restapi.listen", ":8008", ""},
		{"restapi: {listen: '0.0.0.0:8008', authentication: {username: u, password: p}}", "restapi.connect_address", "pg-test:8008", "restapi.connect_address: missing while the listen address"},
		{"restapi: {listen: '127.0.0.1,10.0.0.5:8008', authentication: {username: u, password: p}}", "restapi.listen", ":8008", "restapi.listen: 127.0.0.1,10.0.0.5:8008 names several addresses"},
		{"restapi: {listen: '[::1]:8008'}", "restapi.listen", "[::1]:8008", ""},
		{"postgresql: {listen: '*:5432'}", "postgresql.listen", "*:5432", ""},
		{"postgresql: {listen: '*'}", "postgresql.listen", "*:5432", ""},
		{"postgresql: {listen: '0.0.0.0:5432', connect_address: '10.0.0.5:5432'}", "postgresql.listen", "0.0.0.0:5432", ""},
		{"postgresql: {listen: '127.0.0.1,10.0.0.5:5433'}", "postgresql.listen", "*:5433", "postgresql.listen: 127.0.0.1,10.0.0.5:5433 names several addresses"},
		{"postgresql: {listen: '10.0.0.5,*:5432'}", "postgresql.listen", "*:5432", ""},
		{"postgresql: {listen: '*:5432'}", "postgresql.connect_address", "pg-test:5432", "postgresql.connect_address: missing"},
		{"postgresql: {listen: '10.0.0.5:5432'}", "postgresql.connect_address", "10.0.0.5:5432", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, notes := convertMap(t, tt.in)
			if got := at(m, tt.key); got != tt.want {
				t.Errorf("%s = %v, want %s", tt.key, got, tt.want)
			}
			if tt.note != "" && !strings.Contains(notes, tt.note) {
				t.Errorf("notes lack %q:\n%s", tt.note, notes)
			}
		})
	}
}

// TestConvertEveryKey converts a file using every section the issue
// names and checks each key's destination, and a note for each key that
// has none.
func TestConvertEveryKey(t *testing.T) {
	in := `
scope: prod
namespace: /pg/
name: db1
etcd3:
  hosts: [10.0.0.1:2379, "10.0.0.2"]
  protocol: https
  cacert: /etc/ssl/ca.pem
  cert: /etc/ssl/etcd.pem
  key: /etc/ssl/etcd.key
  username: patroni
  password: etcdpw
restapi:
  listen: 10.0.0.11:8008
  connect_address: 10.0.0.11:8008
  authentication: {username: admin, password: s3cret}
  certfile: /etc/ssl/api.pem
  keyfile: /etc/ssl/api.key
  cafile: /etc/ssl/ca.pem
  verify_client: optional
  allowlist: [10.0.0.0/8]
ctl:
  insecure: true
  cacert: /etc/ssl/ca.pem
  certfile: /etc/ssl/ctl.pem
  keyfile: /etc/ssl/ctl.key
postgresql:
  listen: 10.0.0.11:5432
  connect_address: 10.0.0.11:5432
  data_dir: /var/lib/pg/data
  bin_dir: /usr/lib/postgresql/15/bin
  pg_ctl_timeout: 120
  parameters: {max_connections: 300, shared_buffers: 1GB, port: 5433, listen_addresses: '*'}
  pg_hba: [host all all 10.0.0.0/8 scram-sha-256]
  authentication:
    superuser: {username: postgres, password: su}
    replication: {username: repl, password: rp, sslmode: require}
    rewind: {username: rw, password: rwp}
  callbacks:
    on_start: /bin/true
    on_role_change: /usr/local/bin/vip.sh
  pre_promote: /usr/local/bin/fence.sh
  use_pg_rewind: true
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 5
    retry_timeout: 10
    maximum_lag_on_failover: 16MB
    primary_start_timeout: 600
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 2
    failsafe_mode: true
    slots:
      standby_dr: {type: physical}
      cdc: {type: logical, database: app, plugin: pgoutput}
    ignore_slots: [{name: debezium, type: logical}]
    postgresql:
      use_slots: false
      parameters: {wal_keep_size: 1GB}
    standby_cluster: {host: 10.1.0.1}
  initdb: [data-checksums, {encoding: UTF8}]
  users: {app: {password: x}}
tags:
  nofailover: true
  noloadbalance: true
  clonefrom: false
  nosync: true
  failover_priority: 3
  replicatefrom: db2
  nostream: true
  datacenter: east
watchdog:
  mode: required
  device: /dev/watchdog1
  safety_margin: 3
log:
  level: WARNING
  type: json
  dir: /var/log/patroni
consul: {host: 127.0.0.1:8500}
`
	m, notes := convertMap(t, in)
	want := map[string]any{
		"scope": "prod", "namespace": "/pg/", "name": "db1",
		"etcd.cacert": "/etc/ssl/ca.pem", "etcd.cert": "/etc/ssl/etcd.pem", "etcd.key": "/etc/ssl/etcd.key",
		"etcd.username": "patroni", "etcd.password": "etcdpw",
		"restapi.listen": "10.0.0.11:8008", "restapi.authentication.username": "admin", "restapi.authentication.password": "s3cret",
		"restapi.certfile": "/etc/ssl/api.pem", "restapi.keyfile": "/etc/ssl/api.key", "restapi.cafile": "/etc/ssl/ca.pem",
		"restapi.verify_client": "optional", "restapi.allow_unauthenticated_writes": nil,
		"ctl.insecure": true, "ctl.cacert": "/etc/ssl/ca.pem", "ctl.certfile": "/etc/ssl/ctl.pem", "ctl.keyfile": "/etc/ssl/ctl.key",
		"postgresql.listen": "10.0.0.11:5432", "postgresql.data_dir": "/var/lib/pg/data", "postgresql.pg_ctl_timeout": "2m0s",
		"postgresql.parameters.max_connections": 300, "postgresql.parameters.shared_buffers": "1GB", "postgresql.parameters.port": nil,
		"postgresql.authentication.replication.username": "repl", "postgresql.authentication.rewind.password": "rwp",
		"bootstrap.dcs.ttl": "25s", "bootstrap.dcs.loop_wait": "5s", "bootstrap.dcs.retry_timeout": "10s",
		"bootstrap.dcs.maximum_lag_on_failover": 16 << 20, "bootstrap.dcs.master_start_timeout": "4m10s",
		"bootstrap.dcs.synchronous_mode": true, "bootstrap.dcs.synchronous_mode_strict": true, "bootstrap.dcs.synchronous_node_count": 2,
		"bootstrap.dcs.slots.standby_dr.type": "physical", "bootstrap.dcs.slots.cdc.type": "logical",
		"bootstrap.dcs.slots.cdc.database": "app", "bootstrap.dcs.slots.cdc.plugin": "pgoutput",
		"postgresql.callbacks.on_start": "/bin/true", "postgresql.callbacks.on_role_change": "/usr/local/bin/vip.sh",
		"bootstrap.dcs.postgresql.use_pg_rewind": true, "bootstrap.dcs.postgresql.use_slots": false,
		"bootstrap.dcs.postgresql.parameters.wal_keep_size": "1GB",
		"tags.nofailover": true, "tags.noloadbalance": true, "tags.clonefrom": nil, "tags.nosync": true, "tags.failover_priority": 3,
		"tags.replicatefrom": "db2", "tags.nostream": true, "tags.datacenter": "east",
		"watchdog.mode": "required", "watchdog.device": "/dev/watchdog1", "watchdog.safety_margin": "3s",
		"log.level": "warn", "log.format": "json",
	}
	for k, v := range want {
		if got := at(m, k); got != v {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}
	if got := at(m, "etcd.endpoints"); len(got.([]any)) != 2 || got.([]any)[0] != "https://10.0.0.1:2379" || got.([]any)[1] != "https://10.0.0.2:2379" {
		t.Errorf("etcd.endpoints = %v, want https:// and the default port", got)
	}
	if got := at(m, "bootstrap.dcs.ignore_slots"); len(got.([]any)) != 1 || at(got.([]any)[0].(map[string]any), "name") != "debezium" ||
		at(got.([]any)[0].(map[string]any), "type") != "logical" {
		t.Errorf("bootstrap.dcs.ignore_slots = %v, want the debezium matcher", got)
	}
	for _, n := range []string{
		"postgresql.pre_promote: pgha has no such hook",
		"postgresql.parameters.port: pgha sets it from postgresql.listen",
		"postgresql.parameters.listen_addresses:",
		"postgresql.authentication.replication.sslmode:",
		"restapi.allowlist: pgha has no address allowlist",
		"bootstrap.dcs.ttl: 20s is less than loop_wait + 2*retry_timeout",
		"bootstrap.dcs.primary_start_timeout: 10m0s is longer than 10*ttl",
		"bootstrap.dcs.failsafe_mode:", "bootstrap.dcs.standby_cluster: standby clusters are not supported",
		"bootstrap.users:", "log.dir: pgha logs to stderr",
		"consul: pgha keeps its state in etcd (v3 API) only",
	} {
		if !strings.Contains(notes, n) {
			t.Errorf("notes lack %q:\n%s", n, notes)
		}
	}
	for _, carried := range []string{"tags.", "etcd3.", "postgresql.callbacks", "bootstrap.dcs.slots", "bootstrap.dcs.ignore_slots",
		"bootstrap.dcs.synchronous_node_count"} {
		for _, line := range strings.Split(notes, "\n") {
			if strings.HasPrefix(line, carried) {
				t.Errorf("a carried key was noted as left out: %s", line)
			}
		}
	}
}

func TestConvertBadInput(t *testing.T) {
	if _, err := Convert([]byte("scope: [unclosed"), Options{}); err == nil {
		t.Fatal("Convert accepted invalid YAML")
	}
	_, notes := convertMap(t, "restapi: 8008\nwatchdog: {mode: off}\n")
	if !strings.Contains(notes, `restapi: want a mapping, got "8008"`) {
		t.Errorf("notes lack the bad restapi section:\n%s", notes)
	}
}

func TestWatchdogOffAsBool(t *testing.T) {
	m, _ := convertMap(t, "watchdog: {mode: false}\n")
	if got := at(m, "watchdog.mode"); got != "off" {
		t.Errorf("watchdog.mode = %v, want off (PyYAML reads off as false)", got)
	}
}

func TestEnvList(t *testing.T) {
	got := envList("'etcd1:2379','etcd2:2379'")
	if len(got) != 2 || got[0] != "etcd1:2379" || got[1] != "etcd2:2379" {
		t.Errorf("envList = %v", got)
	}
	m, notes := convertMap(t, "", "PATRONI_ETCD3_HOSTS=a:2379,b:2379", "PATRONI_SCOPE=s", "PATRONI_RESTAPI_USERNAME=u",
		"PATRONI_RESTAPI_PASSWORD=p", "PATRONI_SUPERUSER_PASSWORD=x", "PATRONI_BOGUS=1", "HOME=/root")
	if at(m, "scope") != "s" || at(m, "restapi.authentication.username") != "u" || at(m, "postgresql.authentication.superuser.password") != "x" {
		t.Errorf("env not applied: %v", m)
	}
	if e := at(m, "etcd.endpoints").([]any); len(e) != 2 {
		t.Errorf("etcd.endpoints = %v", e)
	}
	if !strings.Contains(notes, "PATRONI_BOGUS: not a Patroni setting") || strings.Contains(notes, "HOME") {
		t.Errorf("notes:\n%s", notes)
	}
}

func TestConvertTags(t *testing.T) {
	c, notes := parseConverted(t, `tags:
  nofailover: "yes"
  noloadbalance: false
  failover_priority: "4"
  nostream: 1
  replicatefrom: db2
  sync_priority: 3
  datacenter: east
  zone: null
  labels: {team: db, tier: 1}
  odd: {1: one}
`)
	prio := 4
	want := config.Tags{NoFailover: true, FailoverPriority: &prio, NoStream: true, ReplicateFrom: "db2",
		Other: map[string]any{"sync_priority": 3, "datacenter": "east", "zone": nil, "labels": map[string]any{"team": "db", "tier": 1}}}
	if !reflect.DeepEqual(c.Tags, want) {
		t.Errorf("tags = %#v, want %#v", c.Tags, want)
	}
	for _, n := range []string{"tags.sync_priority: carried as written", "tags.odd: its value cannot be published as JSON"} {
		if !strings.Contains(notes, n) {
			t.Errorf("notes lack %q:\n%s", n, notes)
		}
	}
	_, notes = parseConverted(t, "tags: {failover_priority: -1}\n")
	if !strings.Contains(notes, `tags.failover_priority: "-1" is not an integer of 0 or more`) {
		t.Errorf("notes:\n%s", notes)
	}
}

func TestConvertCallbacks(t *testing.T) {
	c, notes := parseConverted(t, `postgresql:
  data_dir: /var/lib/pg
  callbacks:
    on_start: /nonexistent/start.sh
    on_stop: "/usr/local/bin/cb.sh --label 'a b'"
    on_role_change: "/usr/local/bin/vip.sh 'unterminated"
    on_reload: [/bin/true]
    on_restart: ""
    on_failover: /bin/true
  before_stop: /bin/true
bootstrap:
  post_bootstrap: /bin/true
`)
	want := config.Callbacks{OnStart: "/nonexistent/start.sh", OnStop: "/usr/local/bin/cb.sh --label 'a b'",
		OnRoleChange: "/usr/local/bin/vip.sh 'unterminated"}
	if c.PostgreSQL.Callbacks != want {
		t.Errorf("callbacks = %#v, want %#v", c.PostgreSQL.Callbacks, want)
	}
	for _, n := range []string{
		"postgresql.callbacks.on_role_change: carried, but callback: unterminated ' quote",
		"postgresql.callbacks.on_reload: want one command line",
		"postgresql.callbacks.on_failover: pgha has no such setting",
		"postgresql.before_stop: pgha has no such hook", "bootstrap.post_bootstrap: pgha has no such hook",
	} {
		if !strings.Contains(notes, n) {
			t.Errorf("notes lack %q:\n%s", n, notes)
		}
	}
	for _, line := range strings.Split(notes, "\n") {
		if strings.HasPrefix(line, "postgresql.callbacks.on_start") || strings.HasPrefix(line, "postgresql.callbacks.on_stop") {
			t.Errorf("a carried callback was noted: %s", line)
		}
	}
}

func TestConvertSynchronous(t *testing.T) {
	tests := []struct {
		in    string
		mode  bool
		count int
		note  string
	}{
		{"{synchronous_mode: true, synchronous_node_count: 3}", true, 3, ""},
		{"{synchronous_mode: on, synchronous_node_count: '2'}", true, 2, ""},
		{"{synchronous_mode: true, synchronous_node_count: 0}", true, 1, `bootstrap.dcs.synchronous_node_count: "0" is not an integer of 1 or more`},
		{"{synchronous_mode: quorum, synchronous_node_count: 2}", true, 2, "bootstrap.dcs.synchronous_mode: quorum commit (ANY n) is not supported"},
		{"{synchronous_mode: false}", false, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, notes := parseConverted(t, "bootstrap: {dcs: "+tt.in+"}\n")
			if c.Bootstrap.DCS.SynchronousMode != tt.mode || c.Bootstrap.DCS.SynchronousNodeCount != tt.count {
				t.Errorf("synchronous_mode %v, synchronous_node_count %d; want %v, %d",
					c.Bootstrap.DCS.SynchronousMode, c.Bootstrap.DCS.SynchronousNodeCount, tt.mode, tt.count)
			}
			if tt.note == "" && notes != "" || !strings.Contains(notes, tt.note) {
				t.Errorf("notes = %q, want %q", notes, tt.note)
			}
		})
	}
}
