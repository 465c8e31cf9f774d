// Package convert turns a Patroni configuration file into a pgha node
// configuration: `pgha convert --patroni patroni.yml > node.yml`.
//
// It maps every Patroni key pgha has an equivalent for (scope, namespace,
// name, the etcd3 section, restapi, ctl, postgresql, bootstrap.dcs,
// bootstrap.initdb, tags, watchdog, log), reads Patroni's PATRONI_*
// environment overrides when asked (env files of a Docker or Kubernetes
// deployment), and lists every key it could not carry over, with the
// reason, as Notes. The result is YAML that config.Parse accepts on a
// machine with Postgres installed.
//
// It only reads and writes bytes: it never touches etcd, Postgres or the
// file system beyond what the caller hands it, so the table tests run on
// Patroni's own sample files.
package convert
