#!/usr/bin/env bash
# bench-pooler.sh: pgbench -S through nothing / PgBouncer / pgha's pooler,
# same settings (transaction mode, pool 20, md5 auth, TCP to Postgres), then RSS per idle
# client for both poolers; then the same with both poolers reaching Postgres
# over its Unix socket (pgha does that for its own node by default).
# Run as root from the repository root:
#   scripts/bench-pooler.sh            # DUR=5 seconds per run, REPS=3, IDLE=10000
#   DUR=10 REPS=1 IDLE=2000 SETTLE=8 scripts/bench-pooler.sh
# Needs postgresql-15, pgbouncer and pgbench (scripts/install-deps.sh).
set -euo pipefail

DUR=${DUR:-5}
IDLE=${IDLE:-10000}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-25432}
BOUNCER_PORT=${BOUNCER_PORT:-26432}
PGHA_PORT=${PGHA_PORT:-27432}
BOUNCER_UNIX_PORT=$((BOUNCER_PORT + 1))
PGHA_UNIX_PORT=$((PGHA_PORT + 1))
PASS=benchpw

[ "$(id -u)" = 0 ] || { echo "run as root (Postgres and PgBouncer run as the postgres user)" >&2; exit 2; }
for b in "$PGBIN/initdb" /usr/sbin/pgbouncer /usr/bin/pgbench /usr/bin/psql; do
	[ -x "$b" ] || { echo "missing $b: run scripts/install-deps.sh" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/pgha-bench.XXXXXX)
chown postgres "$WORK"
chmod 755 "$WORK"
PIDS=()
cleanup() {
	for f in "$WORK"/pgbouncer*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

echo "== building pgha-pooler-bench"
go build -o "$WORK/pgha-pooler-bench" ./pooler/cmd/pgha-pooler-bench

echo "== starting Postgres 15 on $PGPORT"
echo "$PASS" >"$WORK/pw"
chown postgres "$WORK/pw"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/data" -U postgres --pwfile="$WORK/pw" --auth=md5 >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 300
shared_buffers = 128MB
fsync = off
password_encryption = 'md5'
CONF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
export PGPASSWORD=$PASS PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1
pgbench -i -s 10 -q -p "$PGPORT" >/dev/null 2>&1

echo "\"postgres\" \"$PASS\"" >"$WORK/userlist.txt"
chown postgres "$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = md5
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 11000
logfile = $WORK/pgbouncer.log
log_connections = 0
log_disconnections = 0
pidfile = $WORK/pgbouncer.pid
INI
chown postgres "$WORK/pgbouncer.ini"
# The same PgBouncer, reaching Postgres through its Unix socket.
sed -e "s#host=127.0.0.1 port=$PGPORT#host=$WORK port=$PGPORT#" -e "s#listen_port = $BOUNCER_PORT#listen_port = $BOUNCER_UNIX_PORT#" \
	-e "s#pgbouncer\.\(log\|pid\)#pgbouncer-unix.\1#" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer-unix.ini"
chown postgres "$WORK/pgbouncer-unix.ini"
echo "== starting PgBouncer on $BOUNCER_PORT (+ $BOUNCER_UNIX_PORT) and pgha's pooler on $PGHA_PORT (+ $PGHA_UNIX_PORT)"
for ini in pgbouncer pgbouncer-unix; do
	runuser -u postgres -- bash -c "ulimit -n \$(ulimit -Hn); exec /usr/sbin/pgbouncer -q $WORK/$ini.ini" 2>>"$WORK/$ini.stderr" &
	PIDS+=($!)
	disown $! 2>/dev/null || true
done
# PGHA_GOMAXPROCS=1 runs the pooler on one core, as PgBouncer does.
for t in "127.0.0.1:$PGPORT $PGHA_PORT" "$WORK/.s.PGSQL.$PGPORT $PGHA_UNIX_PORT"; do
	set -- $t
	GOMAXPROCS=${PGHA_GOMAXPROCS:-} "$WORK/pgha-pooler-bench" serve -target "$1" -listen "127.0.0.1:$2" \
		-auth-file "$WORK/userlist.txt" -auth-type md5 -pool-size 20 -max-client-conn 11000 &
	PIDS+=($!)
	[ "$2" = "$PGHA_PORT" ] && PGHA_PID=$!
done
sleep 1
BOUNCER_PID=$(cat "$WORK/pgbouncer.pid")

tps() { # port clients mode
	local j=$(($2 < 2 ? 1 : 2))
	local out
	out=$(pgbench -n -S -T "$DUR" -c "$2" -j "$j" -M "$3" -p "$1" 2>&1 || true)
	if grep -q "number of failed transactions: 0\|^tps" <<<"$out" && ! grep -q "aborted\|error" <<<"$out"; then
		awk '/^tps/ {printf "%.0f", $3}' <<<"$out"
	else
		echo "failed" # e.g. PgBouncer < 1.21 cannot pool -M prepared
	fi
}
ratio() { # a b
	case "$1$2" in *failed*) echo "-" ;; *) printf '%.2f' "$(echo "$1 / $2" | bc -l)" ;; esac
}

# The machine may be shared: each figure is the best of REPS runs, with
# the five targets interleaved so that load changes hit them alike.
REPS=${REPS:-3}
best() { # current candidate: the higher tps; "failed" only if all failed
	if [ "$2" = failed ]; then
		if [ "$1" = 0 ]; then echo failed; else echo "$1"; fi
	elif [ "$1" = failed ] || [ "$2" -gt "$1" ]; then
		echo "$2"
	else
		echo "$1"
	fi
}
declare -A D B H BU HU
ROWS=("1 simple" "50 simple" "50 prepared" "200 extended")
for run in "${ROWS[@]}"; do
	set -- $run
	d=0 b=0 h=0 bu=0 hu=0
	for _ in $(seq 1 "$REPS"); do
		d=$(best "$d" "$(tps "$PGPORT" "$1" "$2")")
		b=$(best "$b" "$(tps "$BOUNCER_PORT" "$1" "$2")")
		h=$(best "$h" "$(tps "$PGHA_PORT" "$1" "$2")")
		bu=$(best "$bu" "$(tps "$BOUNCER_UNIX_PORT" "$1" "$2")")
		hu=$(best "$hu" "$(tps "$PGHA_UNIX_PORT" "$1" "$2")")
	done
	D[$run]=$d B[$run]=$b H[$run]=$h BU[$run]=$bu HU[$run]=$hu
done
echo
echo "Both poolers reach Postgres over TCP 127.0.0.1 (the same settings):"
printf '%-26s %10s %10s %10s %10s %10s\n' "pgbench -S (best of $REPS)" direct pgbouncer pgha "pgha/bnc" "pgha/dir"
for run in "${ROWS[@]}"; do
	set -- $run
	printf '%-26s %10s %10s %10s %10s %10s\n' "c=$1 -M $2" "${D[$run]}" "${B[$run]}" "${H[$run]}" "$(ratio "${H[$run]}" "${B[$run]}")" "$(ratio "${H[$run]}" "${D[$run]}")"
done
echo
echo "Server leg over Postgres's Unix socket (what pooler.local_unix_socket does for the node's own Postgres):"
printf '%-26s %10s %10s %10s %14s\n' "pgbench -S (best of $REPS)" "bnc-unix" "pgha-unix" "pgha/bnc" "pgha-unix/bnc"
for run in "${ROWS[@]}"; do
	set -- $run
	printf '%-26s %10s %10s %10s %14s\n' "c=$1 -M $2" "${BU[$run]}" "${HU[$run]}" "$(ratio "${HU[$run]}" "${BU[$run]}")" "$(ratio "${HU[$run]}" "${B[$run]}")"
done
echo "(pgha/bnc: both over the socket; pgha-unix/bnc: pgha over the socket against PgBouncer over TCP)"

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
idle_rss() { # pid port
	local before after
	sleep 1
	before=$(rss "$1")
	"$WORK/pgha-pooler-bench" idle -n "$IDLE" \
		-dsn "postgres://postgres:$PASS@127.0.0.1:$2/postgres?sslmode=disable" >"$WORK/idle.out" 2>&1 &
	local ip=$!
	for _ in $(seq 1 240); do
		grep -q ready "$WORK/idle.out" 2>/dev/null && break
		if ! kill -0 "$ip" 2>/dev/null; then cat "$WORK/idle.out" >&2; return 1; fi
		sleep 0.5
	done
	# Settle before measuring, the same for both poolers: pgha moves
	# sessions idle for 2 maintenance ticks (1 s each) to fresh small
	# stacks and then returns the old stacks to the OS.
	sleep "${SETTLE:-8}"
	after=$(rss "$1")
	kill "$ip"
	wait "$ip" 2>/dev/null || true
	echo "$before $after"
}
printf '\n%-12s %12s %12s %14s\n' "$IDLE idle" "RSS before" "RSS after" "per client"
for pair in "pgbouncer $BOUNCER_PID $BOUNCER_PORT" "pgha $PGHA_PID $PGHA_PORT"; do
	set -- $pair
	read -r before after < <(idle_rss "$2" "$3")
	printf '%-12s %10s kB %10s kB %11.2f KB\n' "$1" "$before" "$after" "$(echo "($after - $before) / $IDLE" | bc -l)"
done
