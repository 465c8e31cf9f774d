// Package daemontest runs in-process pgha clusters for tests: several
// daemons (each with its own config and real Postgres through pgtest) on
// one etcd, with kill -9, clean stops, a cuttable TCP proxy in front of
// etcd per node, and polling helpers. Tests of other packages wire their
// components (REST API, pooler) into each daemon through Start's hooks.
// It is test support only: no production code imports it.
package daemontest
