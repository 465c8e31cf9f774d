#!/usr/bin/env bash
# bench-failover.sh — a benchmark, not a test.
#
# Starts a 3-node `pgha demo` cluster (defaults: ttl 10s, loop_wait 1s,
# retry_timeout 3s), runs a write loop that inserts a row every ~20 ms into
# whichever node accepts it, then:
#   1. N times: kill -9 the leader node (its pgha daemon AND its Postgres)
#      and keep it down until writes resume on another node (the lease must
#      expire); then let the demo restart it so it rejoins as a replica.
#   2. N times: kill -9 only the leader's postmaster (daemon alive: restart
#      in place).
# For each round it prints the seconds without a successful write (last
# write before the kill -> first write after it), then min/median/max.
#
# Usage: scripts/bench-failover.sh [N]   (env: BASE_PORT=35430, PGHA=path)
set -euo pipefail

N=${1:-${N:-5}}
BASE=${BASE_PORT:-35430}
NODES=3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/pgha-bench-failover.XXXXXX)
chmod 755 "$WORK"
DIR=$WORK/demo
PGHA=${PGHA:-$WORK/pgha}
ETCD=127.0.0.1:$((BASE + 400))
export PGPASSWORD=pgha-demo PGCONNECT_TIMEOUT=1 ETCDCTL_API=3

if [ ! -x "$PGHA" ]; then
	echo "building pgha into $PGHA" >&2
	(cd "$ROOT" && go build -o "$PGHA" ./cmd/pgha)
fi

DEMO_PID=
WRITER_PID=
cleanup() {
	touch "$WORK/stop"
	[ -n "$WRITER_PID" ] && wait "$WRITER_PID" 2>/dev/null || true
	if [ -n "$DEMO_PID" ]; then
		kill -TERM "$DEMO_PID" 2>/dev/null || true
		for _ in $(seq 1 120); do kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$DEMO_PID" 2>/dev/null || true
	fi
	echo "logs kept in $WORK" >&2
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

"$PGHA" demo --dir "$DIR" --base-port "$BASE" >"$WORK/demo.out" 2>&1 &
DEMO_PID=$!

wait_for() { # seconds, description, command...
	local t=$1 what=$2
	shift 2
	local end=$(($(date +%s) + t))
	until "$@"; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "timed out after ${t}s waiting for: $what" >&2
			exit 1
		fi
		sleep 0.2
	done
}

leader() { etcdctl --endpoints="$ETCD" get /service/demo/leader --print-value-only 2>/dev/null; }

healthy() {
	local l running
	l=$(leader) || return 1
	[ -n "$l" ] || return 1
	running=$(etcdctl --endpoints="$ETCD" get --prefix /service/demo/members/ --print-value-only 2>/dev/null |
		grep -cE '"state":"(running|streaming)"' || true)
	[ "$running" -eq "$NODES" ]
}

port_of() { echo $((BASE + ${1#node})); }

psql_on() { psql -X -q -A -t -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null; }

wait_for 300 "the demo cluster to come up" grep -q "is up" "$WORK/demo.out"
wait_for 120 "a healthy cluster" healthy
psql_on "$(port_of "$(leader)")" "CREATE TABLE IF NOT EXISTS bench_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())" >/dev/null

# The write loop: one INSERT at a time, trying the last good node first.
writer() {
	local good=1 p i k t0
	local stop_at=$(($(date +%s) + 3600))
	while [ ! -e "$WORK/stop" ] && [ "$(date +%s)" -lt "$stop_at" ]; do
		for k in 0 1 2; do
			i=$(((good - 1 + k) % NODES + 1))
			p=$((BASE + i))
			t0=$(now_ms)
			if psql_on "$p" "INSERT INTO bench_writes DEFAULT VALUES" >/dev/null; then
				# start and end of each acknowledged write
				echo "$t0 $(now_ms) node$i" >>"$WORK/writes.log"
				good=$i
				break
			fi
		done
		sleep 0.02
	done
}
: >"$WORK/writes.log"
writer &
WRITER_PID=$!

# gap KILL_MS: seconds from the last write acknowledged before KILL_MS to
# the first acknowledged write that was sent after it.
gap() {
	local kill_ms=$1 before after
	before=$(awk -v k="$kill_ms" '$1 <= k && $2 > t { t = $2 } END { print t }' "$WORK/writes.log")
	after=$(awk -v k="$kill_ms" '$1 > k { print $2; exit }' "$WORK/writes.log")
	awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f\n", (a - b) / 1000 }'
}

writes_after() { awk -v k="$1" '$1 > k { found = 1 } END { exit !found }' "$WORK/writes.log"; }

summary() { # label, file of seconds
	sort -n "$2" | awk -v label="$1" '{ v[NR] = $1 } END {
		med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%s: n=%d min %.2fs median %.2fs max %.2fs\n", label, NR, v[1], med, v[NR] }'
}

round() { # mode: node | postgres
	local mode=$1 l pid pm kill_ms g
	wait_for 300 "a healthy cluster before the kill" healthy
	sleep 3
	l=$(leader)
	pm=$(head -1 "$DIR/$l/data/postmaster.pid")
	kill_ms=$(now_ms)
	if [ "$mode" = node ]; then
		# Keep the node down (the demo restarts dead children: hide its
		# config so the restart fails) until writes resume elsewhere.
		mv "$DIR/$l.yml" "$DIR/$l.yml.away"
		pid=$(cat "$DIR/$l.pid")
		kill -KILL "$pid"
	fi
	kill -KILL "$pm"
	wait_for 120 "writes to resume after kill -9 of $l ($mode)" writes_after "$kill_ms"
	if [ "$mode" = node ]; then
		mv "$DIR/$l.yml.away" "$DIR/$l.yml"
	fi
	g=$(gap "$kill_ms")
	echo "$g" >>"$WORK/$mode.gaps"
	echo "$mode kill -9 of leader $l: ${g}s without writes (new leader $(leader))"
}

for _ in $(seq 1 "$N"); do round node; done
for _ in $(seq 1 "$N"); do round postgres; done
wait_for 300 "a healthy cluster at the end" healthy
echo
summary "kill -9 of the leader node (daemon + postgres)" "$WORK/node.gaps"
summary "kill -9 of the leader's postgres only      " "$WORK/postgres.gaps"
