// Package config owns pgha's YAML schema: the node configuration read by
// `pgha run -c FILE`, its defaults, PGHA_* environment overrides, and the
// validation that names every bad key and why.
//
// The schema is Patroni-shaped (scope, namespace, name, etcd, restapi,
// postgresql, bootstrap.dcs, tags) so that operators recognise it, plus a
// pooler section for the embedded PgBouncer-style pooler.
//
// config must never import another pgha package, talk to etcd or start
// processes: it is a leaf that every other package may read.
package config
