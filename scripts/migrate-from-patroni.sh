#!/usr/bin/env bash
# migrate-from-patroni.sh — a measurement, not a test.
#
# Moves a running 3-node Patroni cluster to pgha without stopping it, the
# way README's "Moving from Patroni" describes, and measures what clients
# see. Everything runs on loopback as root: one etcd (Debian's etcd-server),
# three Patroni nodes (Debian's patroni package, etcd3, Patroni's sample
# timings ttl 30 / loop_wait 10 / retry_timeout 10), and a write loop
# (e2e/cmd/pgha-writer, one INSERT every 20 ms through a multi-host
# connection string with target_session_attrs=read-write, as applications
# without a proxy do).
#
#   1. every replica, one at a time: pgha convert its patroni.yml, stop
#      Patroni (it stops its Postgres), start pgha run on the same data
#      directory and ports, wait until it streams again;
#   2. the leader last: patronictl switchover to a pgha node, stop Patroni
#      on the old leader (now a replica), start pgha there.
#
# For each step it prints how long the node was out of the cluster and the
# longest gap between two successful writes; at the end the lost writes
# (acknowledged rows missing on the new primary).
#
# Usage: scripts/migrate-from-patroni.sh   (env: BASE_PORT=27430, LOOP_WAIT=10, KEEP=1 keeps the files)
set -euo pipefail

BASE=${BASE_PORT:-27430}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/pgha-migrate.XXXXXX)
chmod 755 "$WORK"
BIN=/usr/lib/postgresql/15/bin
ETCD_PORT=$((BASE + 400))
ETCD=127.0.0.1:$ETCD_PORT
SCOPE=migrate
SU_PW=migrate-su
# No PGPASSWORD in the environment: Patroni's pg_basebackup would send it
# instead of the replication password from its pgpass file.
export PGCONNECT_TIMEOUT=2 ETCDCTL_API=3

for cmd in patroni patronictl etcd etcdctl runuser curl; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd: run scripts/install-deps.sh" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (Postgres runs as the postgres user)" >&2; exit 1; }

echo "building pgha, pghactl and pgha-writer into $WORK" >&2
(cd "$ROOT" && go build -o "$WORK/pgha" ./cmd/pgha && go build -o "$WORK/pghactl" ./cmd/pghactl &&
	go build -o "$WORK/pgha-writer" ./e2e/cmd/pgha-writer)

declare -A PATRONI_PID PGHA_PID
ETCD_PID=
WRITER_PID=
cleanup() {
	set +e
	[ -n "$WRITER_PID" ] && kill -TERM "$WRITER_PID" 2>/dev/null && wait "$WRITER_PID" 2>/dev/null
	for pid in "${PGHA_PID[@]}" "${PATRONI_PID[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PGHA_PID[@]}" "${PATRONI_PID[@]}"; do
		for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$pid" 2>/dev/null
	done
	for i in 0 1 2; do
		cp "$WORK/pg$i/data.pgha/postgresql.log" "$WORK/pg$i.postgres.log" 2>/dev/null
		[ -f "$WORK/pg$i/data/postmaster.pid" ] && runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/pg$i/data" -m immediate stop >/dev/null 2>&1
	done
	[ -n "$ETCD_PID" ] && kill -TERM "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null
	if [ -n "${KEEP:-}" ]; then echo "files kept in $WORK" >&2; else echo "logs kept in $WORK/*.log" >&2; find "$WORK" -mindepth 1 -maxdepth 1 ! -name '*.log' ! -name '*.yml' ! -name 'writes*' -exec rm -rf {} +; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
wait_for() { # seconds, description, command...
	local t=$1 what=$2
	shift 2
	local end=$(($(date +%s) + t))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "timed out after ${t}s waiting for: $what" >&2
			exit 1
		fi
		sleep 0.2
	done
}

# --- etcd -----------------------------------------------------------------
etcd --name migrate --data-dir "$WORK/etcd" --listen-client-urls "http://$ETCD" --advertise-client-urls "http://$ETCD" \
	--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
	--initial-cluster "migrate=http://127.0.0.1:$((ETCD_PORT + 1))" >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
wait_for 30 "etcd" etcdctl --endpoints "$ETCD" endpoint health

# --- the Patroni cluster ---------------------------------------------------
for i in 0 1 2; do
	mkdir -p "$WORK/pg$i"
	cat >"$WORK/pg$i.yml" <<EOF
scope: $SCOPE
namespace: /service/
name: pg$i
restapi:
  listen: 127.0.0.1:$((BASE + 100 + i))
  connect_address: 127.0.0.1:$((BASE + 100 + i))
etcd3:
  hosts: $ETCD
bootstrap:
  dcs:
    ttl: 30
    loop_wait: ${LOOP_WAIT:-10}
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1:$((BASE + i))
  connect_address: 127.0.0.1:$((BASE + i))
  data_dir: $WORK/pg$i/data
  bin_dir: $BIN
  pgpass: $WORK/pg$i/pgpass
  authentication:
    superuser: {username: postgres, password: $SU_PW}
    replication: {username: replicator, password: migrate-repl}
    rewind: {username: rewind_user, password: migrate-rewind}
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 md5
  - host all all 127.0.0.1/32 md5
  parameters:
    unix_socket_directories: $WORK/pg$i
tags:
  nofailover: false
EOF
done
chown -R postgres "$WORK"

start_patroni() {
	runuser -u postgres -- patroni "$WORK/pg$1.yml" >>"$WORK/pg$1.patroni.log" 2>&1 &
	PATRONI_PID[$1]=$!
}
api() { curl -s --max-time 2 "http://127.0.0.1:$((BASE + 100 + $1))/$2"; }
leader() { etcdctl --endpoints "$ETCD" get --print-value-only "/service/$SCOPE/leader"; }
sql() { PGPASSWORD=$SU_PW psql -h 127.0.0.1 -p $((BASE + $1)) -U postgres -d postgres -Atc "$2"; }
streams() { [ "$(sql "$1" "SELECT status FROM pg_stat_wal_receiver")" = streaming ]; }
is_pgha() { api "$1" patroni | grep -q '"version": *"0\.1\.0"'; }
patronictl_() { patronictl -c "$WORK/pg0.yml" "$@"; }
leader_is() { [ "$(leader)" = "$1" ]; }
pgha_streams() { is_pgha "$1" && streams "$1"; }

start_patroni 0
wait_for 120 "pg0 bootstraps and leads" leader_is pg0
start_patroni 1
start_patroni 2
wait_for 180 "pg1 streams" streams 1
wait_for 180 "pg2 streams" streams 2
echo "Patroni cluster up:" >&2
patronictl_ list >&2

# --- the write loop --------------------------------------------------------
DSN="postgres://postgres:$SU_PW@127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))/postgres?target_session_attrs=read-write&connect_timeout=1"
"$WORK/pgha-writer" -dsn "$DSN" -table migrate_writes -every 20ms -timeout 2s -for 30m >"$WORK/writes.out" 2>"$WORK/writer.log" &
WRITER_PID=$!
wait_for 30 "first write" grep -q " ok " "$WORK/writes.out"

# longest_gap FROM_MS TO_MS: the longest time between two successful
# writes whose sends fall in [FROM, TO], in seconds, and the errors.
longest_gap() {
	awk -v from="$1" -v to="$2" '
		$3 == "ok" { if (last && $1 >= from && last <= to && $1 - last > gap) gap = $1 - last; last = $1 }
		$3 == "err" && $1 >= from && $1 <= to { errs++ }
		END { printf "%.2f s, %d failed writes", gap / 1000, errs }' "$WORK/writes.out"
}

SUMMARY=()
convert_node() {
	"$WORK/pgha" convert --patroni "$WORK/pg$1.yml" >"$WORK/pg$1.pgha.yml" 2>"$WORK/pg$1.convert.log" || {
		cat "$WORK/pg$1.convert.log" >&2
		exit 1
	}
}
swap_to_pgha() { # node: stop Patroni (and its Postgres), start pgha on the same files
	local i=$1
	kill -TERM "${PATRONI_PID[$i]}"
	wait "${PATRONI_PID[$i]}" 2>/dev/null || true
	unset "PATRONI_PID[$i]"
	"$WORK/pgha" run -c "$WORK/pg$i.pgha.yml" >"$WORK/pg$i.pgha.log" 2>&1 &
	PGHA_PID[$i]=$!
}

# --- 1. the replicas, one at a time ----------------------------------------
L=$(leader)
for i in 0 1 2; do
	[ "pg$i" = "$L" ] && continue
	convert_node "$i"
	t0=$(now_ms)
	swap_to_pgha "$i"
	wait_for 180 "pg$i runs under pgha and streams" pgha_streams "$i"
	t1=$(now_ms)
	line="replica pg$i: out of the cluster $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1000}') s; writes: longest gap $(longest_gap "$t0" "$t1")"
	echo "$line" >&2
	SUMMARY+=("$line")
done

# --- 2. the leader: switchover to a pgha node, then swap it ------------------
CAND=
for i in 0 1 2; do [ "pg$i" != "$L" ] && CAND=pg$i && break; done
t0=$(now_ms)
patronictl_ switchover "$SCOPE" --leader "$L" --candidate "$CAND" --force >&2
wait_for 120 "$CAND leads" leader_is "$CAND"
li=${L#pg}
wait_for 180 "$L follows $CAND under Patroni" streams "$li"
t1=$(now_ms)
line="switchover $L (Patroni) -> $CAND (pgha): $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1000}') s until the old leader streamed again; writes: longest gap $(longest_gap "$t0" "$t1")"
echo "$line" >&2
SUMMARY+=("$line")
convert_node "$li"
t0=$(now_ms)
swap_to_pgha "$li"
wait_for 180 "$L runs under pgha and streams" pgha_streams "$li"
t1=$(now_ms)
line="old leader $L: out of the cluster $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1000}') s; writes: longest gap $(longest_gap "$t0" "$t1")"
echo "$line" >&2
SUMMARY+=("$line")

# Every replica streams from the new leader; the writer runs on a little.
t0=$(now_ms)
for i in 0 1 2; do
	[ "pg$i" = "$CAND" ] || wait_for 120 "pg$i streams from $CAND" streams "$i"
done
line="all replicas stream from $CAND $(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN{printf "%.1f", (b-a)/1000}') s later"
echo "$line" >&2
SUMMARY+=("$line")
sleep 2
kill -TERM "$WRITER_PID"
wait "$WRITER_PID" 2>/dev/null || true
WRITER_PID=

# --- lost writes: every acknowledged id must be on the new primary -----------
NEWL=$(leader)
ni=${NEWL#pg}
awk '$3 == "ok" { print $4 }' "$WORK/writes.out" | sort -n >"$WORK/writes.acked"
sql "$ni" "SELECT id FROM migrate_writes ORDER BY id" | sort -n >"$WORK/writes.stored"
lost=$(comm -23 "$WORK/writes.acked" "$WORK/writes.stored" | wc -l)
acked=$(wc -l <"$WORK/writes.acked")
"$WORK/pghactl" -c "$WORK/pg$ni.pgha.yml" list >&2

echo
echo "Patroni $(patronictl version 2>/dev/null | awk "{print \$3}") -> pgha, 3 nodes, ttl 30 / loop_wait ${LOOP_WAIT:-10} / retry_timeout 10, write loop every 20 ms ($acked acknowledged writes, $lost lost):"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
