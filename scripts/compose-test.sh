#!/usr/bin/env bash
# compose-test.sh — the docker-compose stack under failures (make compose-test).
#
# Builds bin/pgha and bin/pghactl on the host, the base image
# debian:bookworm-slim when it is missing (scripts/docker-base-image.sh) and
# the three images of docker-compose.yml, then runs e2e/compose's
# TestComposeStack against a project of its own (unique name, random
# passwords, host ports chosen by Docker): kill of the leader's container,
# its rejoin, docker stop of the leader, a switchover, the loss of the etcd
# leader, and down -v. It prints the measured write gaps and the time of
# each step.
#
# Whatever happens, the trap removes the project (containers, volumes,
# network); images stay as a build cache. On failure the stack's logs are
# kept in a file under /tmp, named in the output.
#
# Usage: scripts/compose-test.sh      (needs a Docker engine and docker-compose)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

say() { echo "compose-test: $*"; }
now() { date +%s; }

if ! docker info >/dev/null 2>&1; then
	say "no Docker engine here (docker info failed): start one, or run make test, which skips this"
	exit 1
fi
if ! command -v docker-compose >/dev/null 2>&1; then
	say "docker-compose is missing: apt-get install docker-compose"
	exit 1
fi

export COMPOSE_PROJECT_NAME="pgha-test-$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
export COMPOSE_FILE="$ROOT/docker-compose.yml"
secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
POSTGRES_PASSWORD=$(secret) REPLICATION_PASSWORD=$(secret) REWIND_PASSWORD=$(secret) RESTAPI_PASSWORD=$(secret)
export POSTGRES_PASSWORD REPLICATION_PASSWORD REWIND_PASSWORD RESTAPI_PASSWORD
# Empty host ports: Docker picks free ones (the test asks docker-compose port).
export PRIMARY_PORT= REPLICAS_PORT= STATS_PORT=
export PGHA1_POOLER_PORT= PGHA1_POOLER_RO_PORT= PGHA2_POOLER_PORT= PGHA2_POOLER_RO_PORT= PGHA3_POOLER_PORT= PGHA3_POOLER_RO_PORT=

cleanup() {
	local rc=$? left
	trap - EXIT INT TERM
	if [ "$rc" -ne 0 ] && [ -n "$(docker-compose ps -q 2>/dev/null)" ]; then
		local log
		log=$(mktemp "/tmp/$COMPOSE_PROJECT_NAME-logs.XXXXXX")
		docker-compose logs --no-color --timestamps >"$log" 2>&1 || true
		say "the stack's logs: $log"
	fi
	docker-compose down -v --remove-orphans >/dev/null 2>&1 || true
	left=$( {
		docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
		docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
		docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
	} 2>/dev/null)
	if [ -n "$left" ]; then
		say "project $COMPOSE_PROJECT_NAME left behind: $(echo "$left" | tr '\n' ' ')"
		[ "$rc" -ne 0 ] || rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(now)
make --no-print-directory -C "$ROOT" build GO="$GO" >/dev/null
t1=$(now)
bash scripts/docker-base-image.sh
t2=$(now)
# Each image once (pgha2 and pgha3 share pgha1's image).
docker-compose build --parallel etcd1 pgha1 haproxy >"/tmp/$COMPOSE_PROJECT_NAME-build.log" 2>&1 || {
	tail -n 40 "/tmp/$COMPOSE_PROJECT_NAME-build.log"
	say "docker-compose build failed (log: /tmp/$COMPOSE_PROJECT_NAME-build.log)"
	exit 1
}
rm -f "/tmp/$COMPOSE_PROJECT_NAME-build.log"
t3=$(now)
say "binaries $((t1 - t0)) s, base image $((t2 - t1)) s, images $((t3 - t2)) s"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(pgha/(node|etcd|haproxy):latest|debian:bookworm-slim) ' | sed 's/^/compose-test: image /'

PGHA_COMPOSE_TEST=1 "$GO" test -count=1 -v -timeout 15m -run '^TestComposeStack$' ./e2e/compose/
t4=$(now)
say "test $((t4 - t3)) s; total $((t4 - t0)) s"
