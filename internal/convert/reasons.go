package convert

import "strings"

const (
	whyDCS       = "pgha keeps its state in etcd (v3 API) only; this DCS is not supported: point etcd.endpoints at an etcd cluster"
	whyLogFile   = "pgha logs to stderr (the journal under systemd) with log.level and log.format only"
	whyNotNeeded = "no equivalent in pgha (Go's HTTP server needs no tuning here)"
	whyScript    = "pgha has no such hook: it runs the postgresql.callbacks scripts (on_start, on_stop, on_restart, on_reload, on_role_change) only"
)

// reasons says why a Patroni key is not carried over, by key path. A
// key missing here gets a generic reason.
var reasons = map[string]string{
	"kubernetes": whyDCS, "consul": whyDCS, "zookeeper": whyDCS, "raft": whyDCS, "exhibitor": whyDCS,
	"citus":             "Citus clusters are not supported",
	"thread_pool_size":  whyNotNeeded,
	"thread_stack_size": whyNotNeeded,

	"etcd3.proxy": "etcd proxies are not supported: list the etcd members", "etcd.proxy": "etcd proxies are not supported: list the etcd members",
	"etcd3.use_proxies": "pgha talks to the listed endpoints and discovers the others itself", "etcd.use_proxies": "pgha talks to the listed endpoints and discovers the others itself",
	"etcd3.version_prefix": "pgha talks to etcd's v3 API under /v3", "etcd3.retry_timeout": "pgha bounds etcd calls with bootstrap.dcs.retry_timeout",
	"etcd3.key_password": "encrypted private keys are not supported: decrypt the key file",

	"restapi.allowlist":                 "pgha has no address allowlist: restrict the port with a firewall and use restapi.authentication",
	"restapi.allowlist_include_members": "pgha has no address allowlist: restrict the port with a firewall and use restapi.authentication",
	"restapi.keyfile_password":          "encrypted private keys are not supported: decrypt the key file",
	"restapi.ciphers":                   "pgha uses Go's TLS defaults (TLS 1.2 and later, modern ciphers)",
	"restapi.http_extra_headers":        "pgha adds no custom response headers",
	"restapi.https_extra_headers":       "pgha adds no custom response headers",
	"restapi.request_queue_size":        whyNotNeeded,
	"restapi.thread_pool_size":          whyNotNeeded,
	"restapi.server_tokens":             "pgha sends no Server header",
	"ctl.keyfile_password":              "encrypted private keys are not supported: decrypt the key file",

	"postgresql.pgpass":               "pgha passes passwords to pg_basebackup and pg_rewind itself and writes no pgpass file",
	"postgresql.config_dir":           "pgha keeps postgresql.conf in data_dir: move settings kept there into postgresql.parameters",
	"postgresql.custom_conf":          "not supported: move its settings into postgresql.parameters",
	"postgresql.proxy_address":        "pgha publishes no proxy address: its own pooler (pooler.listen) routes to the primary",
	"postgresql.basebackup":           "pg_basebackup options are not configurable",
	"postgresql.pg_ident":             "not supported: pg_ident.conf is left as it is",
	"postgresql.use_unix_socket":      "pgha connects to Postgres over TCP (postgresql.connect_address)",
	"postgresql.use_unix_socket_repl": "pgha connects to Postgres over TCP (postgresql.connect_address)",
	"postgresql.recovery_conf":        "recovery settings (restore_command, ...) are not supported",
	"postgresql.database":             "pgha connects to the postgres database",
	"postgresql.krbsrvname":           "Kerberos is not supported",
	"postgresql.pre_promote":          whyScript,
	"postgresql.before_stop":          whyScript,
	"postgresql.bin_name":             "pgha runs the programs under their own names in bin_dir",
	"postgresql.name":                 "pgha uses the top-level name",
	"postgresql.scope":                "pgha uses the top-level scope",

	"bootstrap.post_init":      whyScript,
	"bootstrap.post_bootstrap": whyScript,
	"bootstrap.users":          "pgha creates no users at bootstrap: create them with SQL (CREATE ROLE) once the cluster runs",

	"bootstrap.dcs.standby_cluster":          "standby clusters are not supported",
	"bootstrap.dcs.member_slots_ttl":         "pgha drops a slot when its member leaves the cluster",
	"bootstrap.dcs.failsafe_mode":            "not supported: a leader that cannot reach etcd stops taking writes before its lease can expire",
	"bootstrap.dcs.check_timeline":           "not configurable",
	"bootstrap.dcs.maximum_lag_on_syncnode":  "not supported",
	"bootstrap.dcs.max_timelines_history":    "pgha keeps the whole history",
	"bootstrap.dcs.primary_stop_timeout":     "not supported",
	"bootstrap.dcs.master_stop_timeout":      "not supported",
	"bootstrap.dcs.postgresql.pg_ident":      "not supported: pg_ident.conf is left as it is",
	"bootstrap.dcs.postgresql.recovery_conf": "recovery settings (restore_command, ...) are not supported",

	"watchdog.driver": "pgha drives the Linux watchdog device (watchdog.device) only",
}

// reasonFor says why the key at path was left out.
func reasonFor(path string) string {
	if r, ok := reasons[path]; ok {
		return r
	}
	switch {
	case strings.HasPrefix(path, "log."):
		return whyLogFile
	}
	return "pgha has no such setting: left out"
}
