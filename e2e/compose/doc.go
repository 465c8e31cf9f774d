// Package compose tests the docker-compose stack of the repository's top
// level (docker-compose.yml: three etcd members, three pgha nodes, HAProxy)
// from the host, through Docker: kill -9 of the leader's container under
// writes through HAProxy and a node's pooler, its rejoin, docker stop of
// the leader (a clean handover), a switchover, the loss of the etcd
// leader, and a `docker-compose down -v` that leaves nothing behind.
//
// It runs only under scripts/compose-test.sh (make compose-test), which
// builds the binaries and images and sets PGHA_COMPOSE_TEST=1; plain
// `go test ./...` skips it. It has no non-test code.
package compose
