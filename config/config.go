package config

import (
	"path/filepath"
	"time"
)

// DefaultNamespace is the etcd key prefix Patroni uses.
const DefaultNamespace = "/service/"

// DefaultBinDir is where Debian's postgresql-15 package puts the server
// binaries.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Config is one node's configuration file.
type Config struct {
	Scope      string     `yaml:"scope" json:"scope"`
	Namespace  string     `yaml:"namespace" json:"namespace"`
	Name       string     `yaml:"name" json:"name"`
	Etcd       Etcd       `yaml:"etcd" json:"etcd"`
	RESTAPI    RESTAPI    `yaml:"restapi" json:"restapi"`
	Ctl        Ctl        `yaml:"ctl" json:"ctl"`
	PostgreSQL PostgreSQL `yaml:"postgresql" json:"postgresql"`
	Pooler     Pooler     `yaml:"pooler" json:"pooler"`
	Bootstrap  Bootstrap  `yaml:"bootstrap" json:"bootstrap"`
	Tags       Tags       `yaml:"tags" json:"tags"`
	Log        Log        `yaml:"log" json:"log"`
	Watchdog   Watchdog   `yaml:"watchdog" json:"watchdog"`
}

// Etcd says how to reach the etcd cluster, or to run an embedded one.
type Etcd struct {
	// Endpoints are etcd client URLs or host:port pairs.
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	// Embedded runs a single-member etcd inside the daemon (one-machine
	// use: demos and tests). Its client URL is the first endpoint.
	Embedded bool `yaml:"embedded" json:"embedded"`
	// DataDir is the embedded etcd's data directory.
	DataDir     string   `yaml:"data_dir" json:"data_dir"`
	Username    string   `yaml:"username" json:"username"`
	Password    string   `yaml:"password" json:"-"`
	CACert      string   `yaml:"cacert" json:"cacert"`
	Cert        string   `yaml:"cert" json:"cert"`
	Key         string   `yaml:"key" json:"key"`
	DialTimeout Duration `yaml:"dial_timeout" json:"dial_timeout"`
	// V2LeaderKey also writes the leader key through etcd's v2 API
	// (etcd --enable-v2), with the cluster's ttl, while this node leads:
	// for readers that speak only v2, such as Debian 12's vip-manager
	// 1.0.2 (Patroni's etcd section wrote it there).
	V2LeaderKey bool `yaml:"v2_leader_key" json:"v2_leader_key"`
}

// DefaultEtcdDataDir is where an embedded etcd keeps its data when
// etcd.data_dir is not set: <name>.etcd beside the Postgres data
// directory (pgDataDir).
func DefaultEtcdDataDir(pgDataDir, name string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(pgDataDir)), name+".etcd")
}

// TLS reports whether etcd is reached over TLS with files of the
// node's: a CA certificate or a client certificate is set.
func (e Etcd) TLS() bool { return e.CACert != "" || e.Cert != "" }

// RESTAPI configures the Patroni-compatible HTTP API.
type RESTAPI struct {
	Listen         string `yaml:"listen" json:"listen"`
	ConnectAddress string `yaml:"connect_address" json:"connect_address"`
	// Authentication, when set, is required (basic auth) for unsafe methods.
	Authentication BasicAuth `yaml:"authentication" json:"authentication"`
	CertFile       string    `yaml:"certfile" json:"certfile"`
	KeyFile        string    `yaml:"keyfile" json:"keyfile"`
	CAFile         string    `yaml:"cafile" json:"cafile"`
	// VerifyClient is Patroni's client-certificate check: none (default),
	// optional (unsafe methods need a certificate signed by cafile) or
	// required (every request does).
	VerifyClient string `yaml:"verify_client" json:"verify_client"`
	// AllowUnauthenticatedWrites lets a REST API that listens beyond
	// loopback accept unsafe methods without authentication (see
	// validateRESTAPI).
	AllowUnauthenticatedWrites bool `yaml:"allow_unauthenticated_writes" json:"allow_unauthenticated_writes"`
}

// BasicAuth is a username and password pair for HTTP basic auth.
type BasicAuth struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"-"`
}

// Credentials is one Postgres role the daemon logs in as.
type Credentials struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"-"`
}

// Authentication holds the roles pgha uses against Postgres.
type Authentication struct {
	Superuser   Credentials `yaml:"superuser" json:"superuser"`
	Replication Credentials `yaml:"replication" json:"replication"`
	Rewind      Credentials `yaml:"rewind" json:"rewind"`
}

// PostgreSQL describes the local Postgres instance.
type PostgreSQL struct {
	Listen         string         `yaml:"listen" json:"listen"`
	ConnectAddress string         `yaml:"connect_address" json:"connect_address"`
	DataDir        string         `yaml:"data_dir" json:"data_dir"`
	BinDir         string         `yaml:"bin_dir" json:"bin_dir"`
	OSUser         string         `yaml:"os_user" json:"os_user"`
	Parameters     map[string]any `yaml:"parameters" json:"parameters"`
	PgHBA          []string       `yaml:"pg_hba" json:"pg_hba"`
	Authentication Authentication `yaml:"authentication" json:"authentication"`
	// PgCtlTimeout bounds start, stop and promote.
	PgCtlTimeout Duration `yaml:"pg_ctl_timeout" json:"pg_ctl_timeout"`
	// Callbacks run the operator's scripts on Postgres events.
	Callbacks Callbacks `yaml:"callbacks" json:"callbacks"`
}

// Bootstrap is used once, by the node that initialises the cluster.
type Bootstrap struct {
	// DCS seeds the dynamic configuration stored in etcd's config key.
	DCS DynamicConfig `yaml:"dcs" json:"dcs"`
	// Initdb lists initdb options, Patroni style: "data-checksums" or
	// {"encoding": "UTF8"}.
	Initdb []any `yaml:"initdb" json:"initdb"`
}

// DynamicConfig is the cluster-wide configuration kept in etcd's config
// key; changes apply on every node without a restart.
type DynamicConfig struct {
	TTL                  Duration `yaml:"ttl" json:"ttl"`
	LoopWait             Duration `yaml:"loop_wait" json:"loop_wait"`
	RetryTimeout         Duration `yaml:"retry_timeout" json:"retry_timeout"`
	MaximumLagOnFailover Size     `yaml:"maximum_lag_on_failover" json:"maximum_lag_on_failover"`
	SynchronousMode      bool     `yaml:"synchronous_mode" json:"synchronous_mode"`
	// SynchronousModeStrict keeps commits waiting (synchronous_standby_names
	// '*') when no synchronous standby is left, instead of going async.
	SynchronousModeStrict bool `yaml:"synchronous_mode_strict" json:"synchronous_mode_strict,omitempty"`
	// MasterStartTimeout is how long a crashed primary may take to come
	// back before the leader key is released.
	MasterStartTimeout Duration  `yaml:"master_start_timeout" json:"master_start_timeout"`
	PostgreSQL         DynamicPG `yaml:"postgresql" json:"postgresql"`
	Pause              bool      `yaml:"pause" json:"pause,omitempty"`
	// SynchronousNodeCount is how many synchronous standbys the leader
	// keeps in synchronous_mode (default 1).
	SynchronousNodeCount int `yaml:"synchronous_node_count" json:"synchronous_node_count,omitempty"`
	// Slots are permanent replication slots the leader keeps (Patroni's
	// slots); IgnoreSlots are slots pgha never drops or changes.
	Slots       map[string]Slot `yaml:"slots" json:"slots,omitempty"`
	IgnoreSlots []IgnoreSlot    `yaml:"ignore_slots" json:"ignore_slots,omitempty"`
}

// DynamicPG is the postgresql part of the dynamic configuration.
type DynamicPG struct {
	UsePgRewind bool           `yaml:"use_pg_rewind" json:"use_pg_rewind"`
	UseSlots    bool           `yaml:"use_slots" json:"use_slots"`
	Parameters  map[string]any `yaml:"parameters" json:"parameters,omitempty"`
}

// Log configures the daemon's slog output.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level" json:"level"`
	// Format is text or json.
	Format string `yaml:"format" json:"format"`
}

// Default returns a configuration with every default filled in. Scope,
// name and data_dir have no default.
func Default() Config {
	return Config{
		Namespace: DefaultNamespace,
		Etcd: Etcd{
			Endpoints:   []string{"127.0.0.1:2379"},
			DialTimeout: Duration(5 * time.Second),
		},
		RESTAPI: RESTAPI{Listen: "127.0.0.1:8008"},
		PostgreSQL: PostgreSQL{
			Listen: "127.0.0.1:5432",
			BinDir: DefaultBinDir,
			OSUser: "postgres",
			Authentication: Authentication{
				Superuser:   Credentials{Username: "postgres"},
				Replication: Credentials{Username: "replicator"},
				Rewind:      Credentials{Username: "rewind_user"},
			},
			PgCtlTimeout: Duration(60 * time.Second),
		},
		Pooler:    DefaultPooler(),
		Bootstrap: Bootstrap{DCS: DefaultDynamic()},
		Log:       Log{Level: "info", Format: "text"},
		Watchdog:  DefaultWatchdog(),
	}
}

// DefaultDynamic returns the dynamic configuration defaults DESIGN.md fixes:
// ttl 10 s, loop_wait 1 s, retry_timeout 3 s, maximum_lag_on_failover 1 MiB.
func DefaultDynamic() DynamicConfig {
	return DynamicConfig{
		TTL:                  Duration(10 * time.Second),
		LoopWait:             Duration(1 * time.Second),
		RetryTimeout:         Duration(3 * time.Second),
		MaximumLagOnFailover: Size(1 << 20),
		MasterStartTimeout:   Duration(5 * time.Second),
		PostgreSQL:           DynamicPG{UsePgRewind: true, UseSlots: true},
		SynchronousNodeCount: 1,
	}
}
