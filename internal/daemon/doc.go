// Package daemon wires one pgha node: config -> etcd client (or an
// embedded etcd) -> the local Postgres (replication.Instance) -> the
// leader loop, under one errgroup that more components (REST API, pooler)
// join. It owns no HA decision of its own; it must never talk to Postgres
// or etcd except through the packages it wires.
package daemon
