// Package demo runs a local pgha cluster for `pgha demo`: one embedded etcd
// in the demo process and one `pgha run` child process per node, restarted
// when it dies, all on loopback ports derived from a base port. It must
// never touch a directory other than the one it is given.
package demo
