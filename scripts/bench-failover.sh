#!/usr/bin/env bash
# bench-failover.sh — a benchmark, not a test.
#
# Measures what an application sees when the primary changes, for pgha and,
# when Debian's patroni package is installed, for Patroni in the same run at
# the same timings (ttl 10 s, loop_wait 1 s, retry_timeout 3 s: those of
# `pgha demo`). Everything runs on 127.0.0.1 as root (Postgres as the
# postgres user): one etcd (Debian's etcd-server), three nodes per system,
# one HAProxy per system with scripts/haproxy.cfg's health checks on
# /primary, and for Patroni, which has no pooler, one PgBouncer in front of
# its HAProxy.
#
# Scenarios, N runs each:
#   switchover  POST /switchover to the leader's REST API, naming a replica
#               (what `pghactl switchover --force` and `patronictl
#               switchover --force` send);
#   node        kill -9 of the primary node: its daemon, its postmaster and
#               every Postgres process at once; the node stays dead until
#               every client writes again, then restarts and rejoins;
#   postgres    kill -9 of the primary's postmaster only (daemon alive).
#
# Three clients write concurrently during each run (e2e/cmd/pgha-writer: one
# INSERT of a unique id every 20 ms, one connection, reconnecting after an
# error):
#   pooler   pgha: the embedded pooler of a node that is neither the old
#            nor the new primary (for switchover; for the kills, a replica's);
#            Patroni: the PgBouncer in front of HAProxy;
#   haproxy  HAProxy's primary port;
#   dsn      a multi-host DSN with target_session_attrs=read-write straight
#            to the three Postgres.
# After each run the ids on the final primary are read back: an acknowledged
# id missing there is a lost write. e2e/cmd/pgha-failover-report prints the
# table: scenario x client, runs, min/median/max longest write gap, failed
# and lost writes, pgha/Patroni ratio of the median gaps.
#
# On loopback a killed node's sockets are reset at once; a host that loses
# power instead leaves its peers' connections to time out (the fault suite,
# e2e/faults, measures that on network namespaces).
#
# Usage: scripts/bench-failover.sh [N]   (N runs of each scenario, default 5)
#   env: BASE_PORT=23430 (uses B+1..B+511, below the ephemeral ports),
#        SYSTEMS="pgha patroni", SCENARIOS="switchover node postgres",
#        KEEP=1 keeps the data directories (logs and runs are always kept).
set -euo pipefail
# The whole script is one block, read before it runs: editing the file
# during a run does not change the run.
{

N=${1:-5}
BASE=${BASE_PORT:-23430}
SCENARIOS=${SCENARIOS:-switchover node postgres}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
TTL=10 LOOP_WAIT=1 RETRY_TIMEOUT=3
PW=bench-failover
ETCD=127.0.0.1:$((BASE + 400))
export PGCONNECT_TIMEOUT=2 ETCDCTL_API=3

[ "$(id -u)" -eq 0 ] || { echo "run as root (Postgres runs as the postgres user)" >&2; exit 1; }
for cmd in etcd etcdctl haproxy psql curl jq setpriv go; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd: run scripts/install-deps.sh" >&2; exit 1; }
done
if [ -z "${SYSTEMS:-}" ]; then
	SYSTEMS=pgha
	if command -v patroni >/dev/null && command -v pgbouncer >/dev/null; then
		SYSTEMS="pgha patroni"
	else
		echo "patroni or pgbouncer is not installed: measuring pgha alone" >&2
	fi
fi

WORK=$(mktemp -d /tmp/pgha-bench-failover.XXXXXX)
chmod 755 "$WORK"
RUNS=$WORK/runs
BIN=$WORK/bin
mkdir -p "$RUNS" "$BIN"
echo "building pgha, pgha-writer and pgha-failover-report into $BIN" >&2
(cd "$ROOT" && go build -o "$BIN/pgha" ./cmd/pgha && go build -o "$BIN/pgha-writer" ./e2e/cmd/pgha-writer &&
	go build -o "$BIN/pgha-failover-report" ./e2e/cmd/pgha-failover-report)

# --- processes ----------------------------------------------------------------
# Every process this script starts is in PIDS (name -> pid) until it ends.
declare -A PIDS
DATA_DIRS=()

stop_pid() { # pid: TERM, up to 60 s, then KILL
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
	kill -KILL "$pid" 2>/dev/null || true
}

postmaster_of() { # data dir -> pid of its running postmaster, or nothing
	local pid
	pid=$(head -1 "$1/postmaster.pid" 2>/dev/null) || return 0
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
	return 0
}

cleanup() {
	set +e
	for name in "${!PIDS[@]}"; do [[ $name == writer-* ]] && kill -TERM "${PIDS[$name]}" 2>/dev/null; done
	for name in "${!PIDS[@]}"; do [[ $name == node-* ]] && kill -TERM "${PIDS[$name]}" 2>/dev/null; done
	for name in "${!PIDS[@]}"; do stop_pid "${PIDS[$name]}"; done
	for d in "${DATA_DIRS[@]}"; do
		if [ -n "$(postmaster_of "$d")" ]; then
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1
			pm=$(postmaster_of "$d")
			[ -n "$pm" ] && kill -KILL "$pm"
		fi
	done
	if [ -n "${KEEP:-}" ]; then
		echo "files kept in $WORK" >&2
	else
		rm -rf "$WORK"/*/data "$WORK/etcd" "$BIN"
		echo "logs and runs kept in $WORK" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name, log, command...: start a process and remember it
	local name=$1 log=$2
	shift 2
	"$@" >>"$log" 2>&1 &
	PIDS[$name]=$!
}

# Patroni and PgBouncer run as postgres, without PGPASSWORD (Patroni's
# pg_basebackup would send it instead of the replication password). An
# exec chain, not a function, so the pid start records is theirs.
AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups env -u PGPASSWORD "HOME=$WORK")

now_ms() { date +%s%3N; }

wait_for() { # seconds, description, command...: poll every 0.2 s
	local t=$1 what=$2
	shift 2
	local end
	end=$(($(date +%s) + t))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "timed out after ${t}s waiting for: $what" >&2
			return 1
		fi
		sleep 0.2
	done
}

# --- etcd, shared by both systems (one after the other) ------------------------
start etcd "$WORK/etcd.log" etcd --name bench --data-dir "$WORK/etcd" \
	--listen-client-urls "http://$ETCD" --advertise-client-urls "http://$ETCD" \
	--listen-peer-urls "http://127.0.0.1:$((BASE + 401))" --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 401))" \
	--initial-cluster "bench=http://127.0.0.1:$((BASE + 401))"
wait_for 30 "etcd" etcdctl --endpoints "$ETCD" endpoint health

printf '"postgres" "%s"\n' "$PW" >"$WORK/userlist.txt"
chown postgres "$WORK/userlist.txt"
chmod 600 "$WORK/userlist.txt"

# --- the systems --------------------------------------------------------------
# Ports, system offset O (pgha 0, Patroni 10): node i's Postgres B+O+i, REST
# B+100+O+i; pgha's poolers B+200+i (read-only B+300+i); PgBouncer B+210;
# HAProxy B+500+O (stats B+501+O); etcd B+400.
SYS=
OFF=0
pg_port() { echo $((BASE + OFF + $1)); }
rest_port() { echo $((BASE + 100 + OFF + $1)); }
ha_port() { echo $((BASE + 500 + OFF)); }
ha_stats() { echo $((BASE + 501 + OFF)); }
node_dir() { echo "$WORK/$SYS$1"; }
node_name() { echo "$SYS$1"; }

write_pgha_config() { # i
	local i=$1 d
	d=$(node_dir "$i")
	mkdir -p "$d"
	chown postgres "$d"
	# `pgha demo`'s node config, with the etcd of this script.
	cat >"$d.yml" <<EOF
scope: bench-pgha
namespace: /service/
name: $(node_name "$i")
etcd:
  endpoints: ["http://$ETCD"]
restapi:
  listen: 127.0.0.1:$(rest_port "$i")
postgresql:
  listen: 127.0.0.1:$(pg_port "$i")
  data_dir: $d/data
  parameters:
    max_connections: 100
    shared_buffers: 64MB
    cluster_name: $(node_name "$i")
    wal_receiver_status_interval: 1s
  authentication:
    superuser: {username: postgres, password: $PW}
    replication: {username: replicator, password: $PW-repl}
    rewind: {username: rewind_user, password: $PW-rewind}
pooler:
  listen: 127.0.0.1:$((BASE + 200 + i))
  read_only_listen: 127.0.0.1:$((BASE + 300 + i))
  auth_file: $WORK/userlist.txt
  admin_users: [postgres]
bootstrap:
  dcs:
    ttl: ${TTL}s
    loop_wait: ${LOOP_WAIT}s
    retry_timeout: ${RETRY_TIMEOUT}s
    maximum_lag_on_failover: 1MB
log:
  level: info
EOF
}

write_patroni_config() { # i
	local i=$1 d
	d=$(node_dir "$i")
	mkdir -p "$d"
	cat >"$d.yml" <<EOF
scope: bench-patroni
namespace: /service/
name: $(node_name "$i")
restapi:
  listen: 127.0.0.1:$(rest_port "$i")
  connect_address: 127.0.0.1:$(rest_port "$i")
etcd3:
  hosts: $ETCD
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 100
        wal_receiver_status_interval: 1s
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1:$(pg_port "$i")
  connect_address: 127.0.0.1:$(pg_port "$i")
  data_dir: $d/data
  bin_dir: $PGBIN
  pgpass: $d/pgpass
  authentication:
    superuser: {username: postgres, password: $PW}
    replication: {username: replicator, password: $PW-repl}
    rewind: {username: rewind_user, password: $PW-rewind}
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 md5
  - host all all 127.0.0.1/32 md5
  parameters:
    shared_buffers: 64MB
    cluster_name: $(node_name "$i")
    unix_socket_directories: $d
EOF
	chown -R postgres "$d" "$d.yml"
}

start_node() { # i
	local i=$1
	if [ "$SYS" = pgha ]; then
		start "node-$i" "$(node_dir "$i").log" "$BIN/pgha" run -c "$(node_dir "$i").yml"
	else
		start "node-$i" "$(node_dir "$i").log" "${AS_POSTGRES[@]}" patroni "$(node_dir "$i").yml"
	fi
}

start_haproxy() {
	local cfg=$WORK/$SYS-haproxy.cfg
	{
		cat <<EOF
# scripts/haproxy.cfg's primary port, for the $SYS nodes.
global
    maxconn 2000
defaults
    mode tcp
    retries 2
    timeout queue 5s
    timeout connect 4s
    timeout client 30m
    timeout server 30m
    timeout check 2s
listen stats
    mode http
    bind 127.0.0.1:$(ha_stats)
    stats enable
    stats uri /
listen primary
    bind 127.0.0.1:$(ha_port)
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fastinter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
EOF
		for i in 1 2 3; do
			echo "    server $(node_name "$i") 127.0.0.1:$(pg_port "$i") maxconn 500 check port $(rest_port "$i")"
		done
	} >"$cfg"
	start "haproxy" "$WORK/$SYS-haproxy.log" haproxy -db -f "$cfg"
}

start_pgbouncer() { # Patroni's pooler column: PgBouncer -> HAProxy
	local cfg=$WORK/$SYS-pgbouncer.ini
	cat >"$cfg" <<EOF
[databases]
postgres = host=127.0.0.1 port=$(ha_port) dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $((BASE + 210))
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
admin_users = postgres
pool_mode = transaction
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
EOF
	chown postgres "$cfg"
	start "pgbouncer" "$WORK/$SYS-pgbouncer.log" "${AS_POSTGRES[@]}" pgbouncer "$cfg"
}

# healthy: prints the leader's name when one leader runs, all three members
# run or stream within 1 MiB on its timeline, its Postgres takes writes with
# two streaming replicas, and HAProxy sends to it alone.
healthy() {
	local doc="" i l lp up
	for i in 1 2 3; do
		doc=$(curl -sf --max-time 1 "http://127.0.0.1:$(rest_port "$i")/cluster") && break
	done
	[ -n "$doc" ] || return 1
	l=$(jq -er '.members as $m | ($m | map(select(.role == "leader")) | first) as $l
		| if ($m | length) == 3 and $l.state == "running"
			and all($m[] | select(.role != "leader"); (.state == "running" or .state == "streaming")
				and (.lag | type) == "number" and .lag < 1048576 and .timeline == $l.timeline)
		then $l.name else empty end' <<<"$doc") || return 1
	lp=$(pg_port "${l#"$SYS"}")
	[ "$(sql "$lp" "SELECT pg_is_in_recovery()::text || count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = false2 ] || return 1
	up=$(curl -sf --max-time 1 "http://127.0.0.1:$(ha_stats)/;csv" | awk -F, '$1 == "primary" && $2 != "BACKEND" && $2 != "FRONTEND" && $18 == "UP" { print $2 }')
	[ "$up" = "$l" ] || return 1
	echo "$l"
}

sql() { PGPASSWORD=$PW psql -X -q -A -t -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }

start_system() {
	local i
	for i in 1 2 3; do
		"write_${SYS}_config" "$i"
		DATA_DIRS+=("$(node_dir "$i")/data")
	done
	start_node 1
	wait_for 180 "$SYS: node 1 bootstraps" curl -sf --max-time 1 "http://127.0.0.1:$(rest_port 1)/primary"
	start_node 2
	start_node 3
	start_haproxy
	[ "$SYS" = patroni ] && start_pgbouncer
	wait_for 300 "$SYS: a healthy cluster" healthy
	local l
	l=$(healthy)
	for c in pooler haproxy dsn; do
		sql "$(pg_port "${l#"$SYS"}")" "CREATE TABLE IF NOT EXISTS bench_$c (id bigint PRIMARY KEY, at timestamptz DEFAULT now())" >/dev/null
	done
	echo "$SYS: cluster up, leader $l" >&2
}

stop_system() {
	local name
	for name in pgbouncer haproxy node-1 node-2 node-3; do
		if [ -n "${PIDS[$name]:-}" ]; then
			kill -TERM "${PIDS[$name]}" 2>/dev/null || true
		fi
	done
	for name in pgbouncer haproxy node-1 node-2 node-3; do
		if [ -n "${PIDS[$name]:-}" ]; then
			stop_pid "${PIDS[$name]}"
			wait "${PIDS[$name]}" 2>/dev/null || true
			unset "PIDS[$name]"
		fi
	done
	local i pm
	for i in 1 2 3; do
		pm=$(postmaster_of "$(node_dir "$i")/data")
		if [ -n "$pm" ]; then
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "$(node_dir "$i")/data" -m fast -w -t 60 stop >/dev/null 2>&1 || kill -KILL "$pm" 2>/dev/null || true
		fi
	done
}

# --- one run ------------------------------------------------------------------
# Every client runs its INSERT as an unnamed prepared statement: pgx's
# default, a cache of named ones, breaks on PgBouncer 1.18 in transaction
# pooling, and the clients must be the same for both systems.
EXEC=default_query_exec_mode=exec
dsn_of() { # client, pooler node number
	local hosts="" i
	case $1 in
	pooler)
		if [ "$SYS" = pgha ]; then
			echo "postgres://postgres:$PW@127.0.0.1:$((BASE + 200 + $2))/postgres?$EXEC"
		else
			echo "postgres://postgres:$PW@127.0.0.1:$((BASE + 210))/postgres?$EXEC"
		fi
		;;
	haproxy) echo "postgres://postgres:$PW@127.0.0.1:$(ha_port)/postgres?$EXEC" ;;
	dsn)
		for i in 1 2 3; do hosts+="${hosts:+,}127.0.0.1:$(pg_port "$i")"; done
		echo "postgres://postgres:$PW@$hosts/postgres?target_session_attrs=read-write&$EXEC"
		;;
	esac
}

oks_after() { # log, ms: an acknowledged write sent after ms
	awk -v k="$2" '$3 == "ok" && $1 > k { found = 1; exit } END { exit !found }' "$1"
}
all_resumed() { # run dir, ms
	local c
	for c in pooler haproxy dsn; do oks_after "$1/$c.log" "$2" || return 1; done
}

# recovered scenario old-leader candidate old-postmaster: a leader runs
# Postgres that takes writes, and it is the candidate (switchover), another
# node (node), or a new postmaster (postgres).
recovered() {
	local sc=$1 old=$2 cand=$3 oldpm=$4 doc="" i l
	for i in 1 2 3; do
		doc=$(curl -sf --max-time 1 "http://127.0.0.1:$(rest_port "$i")/cluster") && break
	done
	[ -n "$doc" ] || return 1
	l=$(jq -er '.members[] | select(.role == "leader" and .state == "running") | .name' <<<"$doc") || return 1
	case $sc in
	switchover) [ "$l" = "$cand" ] || return 1 ;;
	node) [ "$l" != "$old" ] || return 1 ;;
	postgres) [ "$l" != "$old" ] || [ "$(postmaster_of "$(node_dir "${l#"$SYS"}")/data")" != "$oldpm" ] || return 1 ;;
	esac
	[ "$(sql "$(pg_port "${l#"$SYS"}")" "SELECT pg_is_in_recovery()")" = f ]
}

# kill_node i: SIGKILL to the daemon, its postmaster and every Postgres
# process of the node at once.
kill_node() {
	local i=$1 pm pids
	pm=$(postmaster_of "$(node_dir "$i")/data")
	pids="${PIDS[node-$i]} $(pgrep -P "${PIDS[node-$i]}" || true)"
	if [ -n "$pm" ]; then pids+=" $pm $(pgrep -P "$pm" || true)"; fi
	# shellcheck disable=SC2086 # a list of pids
	kill -KILL $pids 2>/dev/null || true
	wait "${PIDS[node-$i]}" 2>/dev/null || true
	unset "PIDS[node-$i]"
}

run_once() { # scenario, run number
	local sc=$1 r=$2 dir l li c o cand k event base code pm resumed=yes
	dir=$RUNS/$SYS/$sc/$r
	mkdir -p "$dir"
	wait_for 300 "$SYS: a healthy cluster before $sc run $r" healthy || exit 1
	if [ "$SYS" = patroni ] && ! kill -0 "${PIDS[pgbouncer]}" 2>/dev/null; then
		# PgBouncer 1.18 can die on an assertion when a client that is
		# still logging in sends a cancel request (its log says "bad client
		# state"): the run that saw it shows a pooler client that did not
		# resume; start it again for the next.
		echo "$SYS: PgBouncer exited ($(tail -1 "$WORK/$SYS-pgbouncer.log")): starting it again" | tee -a "$WORK/notes" >&2
		start_pgbouncer
	fi
	l=$(healthy)
	li=${l#"$SYS"}
	# The replicas: cand is the switchover's candidate, o the other one,
	# whose pooler the pooler client uses.
	o=
	cand=
	for k in 1 2 3; do
		[ "$k" = "$li" ] && continue
		if [ -z "$cand" ]; then cand=$k; else o=$k; fi
	done
	[ "$sc" = switchover ] || { o=$cand; cand=; }
	for c in pooler haproxy dsn; do
		base=$(($(now_ms) * 1000))
		echo "$base" >"$dir/$c.base"
		start "writer-$c" "$dir/$c.log" "$BIN/pgha-writer" -dsn "$(dsn_of "$c" "$o")" -table "bench_$c" \
			-every 20ms -timeout 5s -for 10m -id-base "$base"
	done
	wait_for 60 "$SYS: every client writes" all_resumed "$dir" "$(now_ms)" || exit 1
	sleep 1 # a second of steady writes before the event, in every log
	pm=$(postmaster_of "$(node_dir "$li")/data")
	event=$(now_ms)
	echo "$event" >"$dir/event_ms"
	case $sc in
	switchover)
		code=$(curl -s --max-time 60 -o "$dir/switchover.out" -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
			"http://127.0.0.1:$(rest_port "$li")/switchover" -d "{\"leader\":\"$l\",\"candidate\":\"$(node_name "$cand")\"}") || true
		if [ "${code:-}" != 200 ]; then
			# No switchover: the run does not count (no event_ms).
			echo "$SYS switchover run $r: HTTP ${code:-none}: $(cat "$dir/switchover.out")" >&2
			rm -f "$dir/event_ms"
		fi
		;;
	node) kill_node "$li" ;;
	postgres) kill -KILL "$pm" ;;
	esac
	# Writes acknowledged just after the event may still be the old
	# primary's: a client has resumed when it writes after the cluster has
	# recovered (a new primary, or the old one restarted), not before.
	if wait_for 90 "$SYS: a primary again after $sc" recovered "$sc" "$l" "$(node_name "$cand")" "$pm"; then
		wait_for 90 "$SYS: every client writes again after $sc" all_resumed "$dir" "$(now_ms)" || resumed=no
	else
		resumed=no
	fi
	sleep 2 # the clients keep writing a little: a flap after the resumption counts
	for c in pooler haproxy dsn; do
		kill -TERM "${PIDS[writer-$c]}" 2>/dev/null || true
		wait "${PIDS[writer-$c]}" 2>/dev/null || true
		unset "PIDS[writer-$c]"
	done
	[ "$sc" = node ] && start_node "$li"
	if wait_for 300 "$SYS: a healthy cluster after $sc run $r" healthy; then
		l=$(healthy)
		for c in pooler haproxy dsn; do
			base=$(cat "$dir/$c.base")
			sql "$(pg_port "${l#"$SYS"}")" "SELECT id FROM bench_$c WHERE id >= $base AND id < $base + 1000000000" >"$dir/$c.final" ||
				rm -f "$dir/$c.final"
		done
	fi
	printf '%s %-10s run %s: leader %s -> %s, resumed: %s, longest gap (s):' "$SYS" "$sc" "$r" "$(node_name "$li")" "${l:-?}" "$resumed" >&2
	for c in pooler haproxy dsn; do
		awk -v c="$c" '$3 == "ok" { if (p && $2 - p > g) g = $2 - p; p = $2 } END { printf " %s %.2f", c, g / 1000 }' "$dir/$c.log" >&2
	done
	echo >&2
}

echo "load before the runs: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
for SYS in $SYSTEMS; do
	case $SYS in pgha) OFF=0 ;; patroni) OFF=10 ;; *) echo "unknown system $SYS" >&2; exit 1 ;; esac
	start_system
	for sc in $SCENARIOS; do
		for r in $(seq 1 "$N"); do run_once "$sc" "$r"; done
	done
	stop_system
done
echo "load after the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo
"$BIN/pgha-failover-report" "$RUNS" | tee "$WORK/table.md"
if [ -f "$WORK/notes" ]; then cat "$WORK/notes"; fi
exit
}
