// Package leader owns the cluster's state in etcd and the HA decision loop.
//
// It keeps one etcd lease per member (keepalive every ttl/3, remembering
// when the last acknowledged keepalive was sent), the member key bound to
// that lease, the leader key taken with a create_revision==0 transaction,
// the initialize race, the config/failover/sync/history/status keys under
// /<namespace>/<scope>/, and reads them back as one cluster.View.
//
// The HA choice is the pure function Decide (decide.go); Loop only gathers
// facts, calls Decide, and carries out the action through the Postgres
// interface it declares (it never imports replication/, pooler/ or
// restapi/). Callers outside the daemon (pghactl, restapi) use ReadView,
// RequestFailover and CASConfig; they never write leader-only keys.
// NewClient is the one place an etcd client is built from a node file's
// etcd section (TLS, auth, dial timeout), for the daemon and pghactl.
//
// The config key is checked on every read (config.ParseDynamic): a key
// that does not validate is logged once and the daemon's view keeps the
// last good config; CASConfig refuses to store one.
package leader
