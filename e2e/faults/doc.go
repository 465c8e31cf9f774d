// Package faults is pgha's randomized fault suite (Jepsen style).
//
// It builds a small network out of Linux network namespaces on one bridge
// (three etcd members, three nodes each running the repository's `pgha run`
// binary with its Postgres, and one client host), runs a write workload and
// a writability sampler from the client host, injects faults (nemeses)
// chosen from a printed seed, heals them, and checks what pgha promises:
// no acknowledged write lost in synchronous mode, never two writable
// primaries, convergence after healing, and how long writes were
// unavailable per fault.
//
// It owns: the namespaces, bridge, processes and temp dirs it creates
// (removed at the end of a run, and swept at the start of the next when a
// run was killed), and the report (a table per fault kind and a JSON file).
// It never changes the code it tests: a bug it finds is reported, with the
// seed that replays it.
//
// The entry points are the tests in faults_test.go: the short run is part
// of `go test ./...`; `make faults` runs the long one and the named
// scenarios. Everything needs root and `ip netns`; without them the tests
// skip with one line saying why.
package faults
