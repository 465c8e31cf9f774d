// Package replication controls one local PostgreSQL server: initdb,
// start and stop, promote and demote, cloning a replica with
// pg_basebackup, pg_rewind, following a new primary, replication slots and
// status.
//
// It knows exactly one Postgres (an Instance built from
// config.PostgreSQL) and nothing about the cluster: it never imports
// leader/, pooler/, restapi/ or an etcd client. Callers that decide what a
// node should be (leader/) drive it through a small interface they declare.
//
// Every method takes a context and is bounded by it and by
// postgresql.pg_ctl_timeout. Postgres refuses to run as root, so every
// external program (initdb, pg_ctl, pg_basebackup, pg_rewind,
// pg_controldata, postgres --single) runs as postgresql.os_user through
// Command, in its own process group that is killed when the context ends.
// Errors are prefixed "replication:" and carry the program's stderr.
//
// Files the package manages inside the data directory:
//
//   - postgresql.pgha.conf: every parameter pgha sets (listen address,
//     port, WAL settings, postgresql.parameters, primary_conninfo), included
//     from the end of postgresql.conf and rewritten after every clone and
//     rewind (pg_basebackup and pg_rewind copy the source's files).
//   - pg_hba.conf: loopback scram rules for the superuser, replication and
//     rewind roles, then postgresql.pg_hba.
//   - standby.signal: present while the server should run as a replica.
//
// The data directory belongs to os_user, who could plant a link or a
// FIFO there: these files are written as a new file (O_EXCL|O_NOFOLLOW)
// renamed into place and read without following links (files.go).
// Every write that carries the cluster's parameters is checked with
// `postgres -C`; settings Postgres refuses are dropped with a warning
// (params.go). Values are quoted as Postgres's configuration scanner
// reads them back, conninfo values as libpq does.
//
// Beside the data directory, <data_dir>.pgha/ holds the server log
// (postgresql.log) and the Unix socket, so neither is copied by
// pg_basebackup or overwritten by pg_rewind. Temporary siblings
// <data_dir>.pgha-clone-* and <data_dir>.pgha-wipe-* exist only while a
// clone or a wipe runs (leftovers of a killed process are removed by the
// next CloneFrom).
//
// Rejoining a former primary (or a replica that may be ahead of a new
// primary): Rewind (pg_rewind decides whether the timelines diverged and
// does nothing when they did not), then Start; if Rewind fails, Wipe and
// CloneFrom. Promote checkpoints so that a rewind against the new
// primary sees its new timeline at once.
//
// The server is reached over TCP (127.0.0.1, or the listen host) as the
// superuser with its password (scram-sha-256); each call opens a short
// connection bounded by a timeout.
package replication
