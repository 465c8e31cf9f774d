// Package pgtest is the test harness shared by every package's
// integration tests: real Postgres 15 servers (through
// replication.Instance, as the postgres OS user) and real etcd (embedded,
// or Debian's /usr/bin/etcd) on free loopback ports in temporary
// directories. Everything it starts is torn down in t.Cleanup: no stray
// postgres or etcd process survives a test.
//
// Tests must run as root (pgtest switches to the postgres user for
// Postgres) or as the postgres OS user; anything else fails with a
// message saying so. pgtest is imported only from _test.go files.
package pgtest
