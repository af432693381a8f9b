#!/usr/bin/env bash
# A local pvauth cluster on one machine, for trying a multi-replica deployment and for the
# load test to target: one PostgreSQL 15 (fsync on), one Redis (shared rate-limit counts),
# the migrations run once as a job, N `pvauth serve` replicas (default 3) sharing both, and
# HAProxy in front (health checks on /health/ready, X-Forwarded-For believed by pvauth).
#
#   bash contrib/cluster/run.sh up [--replicas N] [--loadtest]   # start in the background
#   bash contrib/cluster/run.sh status                           # processes, health, HAProxy view
#   bash contrib/cluster/run.sh down                             # stop everything, remove the state
#   bash contrib/cluster/run.sh run [--replicas N] [--loadtest]  # up, wait for Ctrl-C, down
#   bash contrib/cluster/run.sh restart 0 1 2                    # rolling restart, one at a time
#
# --loadtest raises every rate-limit rule to 1,000,000,000 (the limits stay on and keep
# counting in Redis, so the shared store is measured too): contrib/loadtest sends every
# request from 127.0.0.1 with a few identities and devices, which the defaults would refuse.
#
# Ports (CLUSTER_PORT_BASE, default 18080; B below):
#   B      HAProxy, public port of the cluster (every replica)      http://127.0.0.1:B
#   B+1    HAProxy, admin port of the cluster (every replica)       http://127.0.0.1:B+1
#   B+2    HAProxy statistics page                                  http://127.0.0.1:B+2/
#   B+3    HAProxy, public port, first replica only (for comparing one replica with N)
#   B+4    HAProxy, admin port, first replica only
#   B+10+2i, B+11+2i   replica i's public and admin port (i = 0 … N-1)
#   B+352  PostgreSQL (database and role "pvauth")   B+299  Redis
#
# State (data, logs, pid files, generated secrets) lives in CLUSTER_DIR (default
# /tmp/pvauth-cluster-$UID); `down` removes it. The binary is built from this checkout with
# `go build -tags sqlite` unless PVAUTH_BIN names one. Variables of the environment reach
# every replica (LOG_LEVEL=error, PROFILING=cpu, GOMAXPROCS, …), except those the script
# sets itself (DSN, ports, secrets, ratelimit.store).
#
# Needs PostgreSQL 15 binaries (PG_BIN, default /usr/lib/postgresql/15/bin), redis-server
# and haproxy (Debian packages postgresql-15, redis-server, haproxy); as root, missing ones
# are installed with apt-get. Works as root (PostgreSQL then runs as the `postgres` user,
# since initdb refuses root) and as an ordinary user.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
BASE="${CLUSTER_PORT_BASE:-18080}"
DIR="${CLUSTER_DIR:-/tmp/pvauth-cluster-$(id -u)}"
# shellcheck source=scripts/as_pg.sh
source "$repo/scripts/as_pg.sh"

PUBLIC_PORT=$BASE
ADMIN_PORT=$((BASE + 1))
STATS_PORT=$((BASE + 2))
ONE_PUBLIC_PORT=$((BASE + 3))
ONE_ADMIN_PORT=$((BASE + 4))
REDIS_PORT=$((BASE + 299))
PG_PORT=$((BASE + 352))
replica_public_port() { echo $((BASE + 10 + 2 * $1)); }
replica_admin_port() { echo $((BASE + 11 + 2 * $1)); }

say() { printf '==> %s\n' "$*"; }
die() {
	printf 'contrib/cluster/run.sh: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# A port is taken when something accepts a connection on it.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds pid-to-watch(optional)
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		port_in_use "$1" && return 0
		if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# HTTP GET on loopback without curl: prints the status code.
http_status() { # port path
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
	IFS= read -r line <&3 || line=""
	exec 3<&- 3>&-
	line="${line#HTTP/* }"
	echo "${line%% *}"
}

find_haproxy() {
	command -v haproxy 2>/dev/null || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } || return 1
}

install_missing() {
	local missing=()
	[ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	find_haproxy >/dev/null || missing+=(haproxy)
	[ "${#missing[@]}" -eq 0 ] && return 0
	if [ "$is_root" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
		say "installing ${missing[*]} (apt-get)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends "${missing[@]}" </dev/null >/dev/null 2>&1 ||
			{ apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" </dev/null >/dev/null; } ||
			die "apt-get install ${missing[*]} failed"
	else
		die "missing: ${missing[*]} (sudo apt-get install -y ${missing[*]}; PG_BIN points at other PostgreSQL binaries)"
	fi
}

# pidfile helpers: every process the script starts has $DIR/<name>.pid.
pid_of() { [ -s "$DIR/$1.pid" ] && head -n1 "$DIR/$1.pid"; }
alive() {
	local p
	p="$(pid_of "$1")" || return 1
	kill -0 "$p" 2>/dev/null
}

stop_pid() { # name [signal]
	local p i
	p="$(pid_of "$1")" || return 0
	if kill -0 "$p" 2>/dev/null; then
		kill -"${2:-TERM}" "$p" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			echo "    $1 (pid $p) did not stop in 15 s: SIGKILL" >&2
			kill -KILL "$p" 2>/dev/null || true
		fi
	fi
	rm -f "$DIR/$1.pid"
}

cmd_down() {
	[ -d "$DIR" ] || { say "no cluster in $DIR"; return 0; }
	say "stopping the cluster in $DIR"
	stop_pid haproxy
	local f n
	for f in "$DIR"/replica-*.pid; do
		[ -e "$f" ] || continue
		n="$(basename "$f" .pid)"
		stop_pid "$n" # SIGTERM: in-flight requests finish, the audit queue is flushed
	done
	stop_pid redis
	if [ -f "$DIR/pg/data/postmaster.pid" ]; then
		as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ "${CLUSTER_KEEP:-0}" = 1 ]; then
		say "kept $DIR (CLUSTER_KEEP=1)"
	else
		rm -rf "$DIR"
	fi
	say "stopped"
}

write_haproxy_cfg() { # replicas
	local n=$1 i fds maxconn=8000
	# HAProxy needs two descriptors per connection (client and server side), plus a few.
	fds="$(ulimit -Hn)"
	if [ "$fds" != unlimited ] && [ $(((fds - 200) / 2)) -lt "$maxconn" ]; then
		maxconn=$(((fds - 200) / 2))
	fi
	{
		sed -e "s|@PUBLIC_PORT@|$PUBLIC_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
			-e "s|@STATS_PORT@|$STATS_PORT|g" -e "s|@ONE_PUBLIC_PORT@|$ONE_PUBLIC_PORT|g" \
			-e "s|@ONE_ADMIN_PORT@|$ONE_ADMIN_PORT|g" -e "s|@MAXCONN@|$maxconn|g" "$here/haproxy.cfg"
		echo
		echo "backend public"
		for ((i = 0; i < n; i++)); do
			echo "    server r$i 127.0.0.1:$(replica_public_port "$i")"
		done
		echo
		echo "backend admin"
		for ((i = 0; i < n; i++)); do
			echo "    server r$i 127.0.0.1:$(replica_admin_port "$i")"
		done
		echo
		echo "backend public_one"
		echo "    server r0 127.0.0.1:$(replica_public_port 0)"
		echo
		echo "backend admin_one"
		echo "    server r0 127.0.0.1:$(replica_admin_port 0)"
	} >"$DIR/haproxy.cfg"
}

start_replica() { # index
	local i=$1
	mkdir -p "$DIR/replica-$i"
	(
		set -a
		# shellcheck disable=SC1091
		. "$DIR/cluster.env"
		set +a
		SERVE_PUBLIC_PORT="$(replica_public_port "$i")"
		SERVE_ADMIN_PORT="$(replica_admin_port "$i")"
		export SERVE_PUBLIC_PORT SERVE_ADMIN_PORT
		cd "$DIR/replica-$i" # PROFILING=cpu writes cpu.pprof here
		exec "$DIR/pvauth" serve </dev/null >>"$DIR/replica-$i.log" 2>&1
	) &
	echo $! >"$DIR/replica-$i.pid"
}

wait_replica() { # index
	wait_port "$(replica_public_port "$1")" 30 "$(pid_of "replica-$1")" ||
		{ tail -n 20 "$DIR/replica-$1.log" >&2; die "replica $1 did not start"; }
	[ "$(http_status "$(replica_public_port "$1")" /health/ready)" = 200 ] ||
		{ tail -n 20 "$DIR/replica-$1.log" >&2; die "replica $1 is not ready"; }
}

# A rolling restart's step: SIGTERM (the replica stops accepting, finishes what it has,
# ends its event streams), start it again, wait until it is ready.
cmd_restart() {
	[ -e "$DIR/cluster.env" ] || die "no cluster in $DIR"
	local i
	for i in "$@"; do
		[ -e "$DIR/replica-$i" ] || die "no replica $i"
		say "restarting replica $i"
		stop_pid "replica-$i"
		start_replica "$i"
		wait_replica "$i"
		# HAProxy takes it back after two good checks two seconds apart (rise 2, inter 2s):
		# only then may the next one go.
		sleep 5
	done
}

on_up_exit() {
	local rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "start failed; stopping what was started (logs kept in $DIR)" >&2
		CLUSTER_KEEP=1 cmd_down
		rm -f "$DIR/cluster.env" # the secrets; the logs stay
	fi
}

cmd_up() {
	local replicas=3 loadtest=0
	while [ $# -gt 0 ]; do
		case "$1" in
		--replicas) replicas="${2:?--replicas needs a number}"; shift 2 ;;
		--replicas=*) replicas="${1#*=}"; shift ;;
		--loadtest) loadtest=1; shift ;;
		-h | --help) usage; exit 0 ;;
		*) die "unknown argument $1 (see: $0 help)" ;;
		esac
	done
	if ! [[ "$replicas" =~ ^[1-9][0-9]?$ ]] || [ "$replicas" -gt 40 ]; then
		die "--replicas wants 1 to 40"
	fi
	if [ -e "$DIR/cluster.env" ]; then
		die "a cluster already runs in $DIR (run.sh status / run.sh down)"
	fi
	install_missing
	local haproxy
	haproxy="$(find_haproxy)"
	local p i ports=("$PUBLIC_PORT" "$ADMIN_PORT" "$STATS_PORT" "$ONE_PUBLIC_PORT" "$ONE_ADMIN_PORT" "$REDIS_PORT" "$PG_PORT")
	for ((i = 0; i < replicas; i++)); do
		ports+=("$(replica_public_port "$i")" "$(replica_admin_port "$i")")
	done
	for p in "${ports[@]}"; do
		port_in_use "$p" && die "port $p is in use (CLUSTER_PORT_BASE moves every port)"
	done

	rm -rf "$DIR"
	mkdir -p "$DIR"
	chmod 755 "$DIR"
	# From here on, a failure stops what was started.
	trap on_up_exit EXIT

	if [ -n "${PVAUTH_BIN:-}" ]; then
		cp "$PVAUTH_BIN" "$DIR/pvauth"
	else
		command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
		say "building pvauth (go build -tags sqlite ./cmd/pvauth)"
		(cd "$repo" && go build -tags sqlite -o "$DIR/pvauth" ./cmd/pvauth)
	fi

	say "PostgreSQL 15 on 127.0.0.1:$PG_PORT (fsync on)"
	mkdir -p "$DIR/pg"
	[ "$is_root" -eq 1 ] && chown postgres: "$DIR/pg"
	as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres --auth=trust --locale=C --encoding=UTF8 \
		>"$DIR/pg/initdb.log" 2>&1 || { cat "$DIR/pg/initdb.log" >&2; die "initdb failed"; }
	# Durability as in production (fsync, synchronous_commit and full_page_writes keep
	# their defaults: on). Room for every replica's pool (32 connections each) + tools.
	cat >>"$DIR/pg/data/postgresql.conf" <<CONF

# contrib/cluster/run.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/pg'
max_connections = $((replicas * 32 + 20))
CONF
	as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w -t 60 start >/dev/null ||
		{ cat "$DIR/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
	as_pg "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
		-c "CREATE ROLE pvauth LOGIN" -c "CREATE DATABASE pvauth OWNER pvauth" >/dev/null

	say "Redis on 127.0.0.1:$REDIS_PORT"
	mkdir -p "$DIR/redis"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$DIR/redis" --logfile "$DIR/redis/redis.log" </dev/null >/dev/null 2>&1 &
	echo $! >"$DIR/redis.pid"
	wait_port "$REDIS_PORT" 10 "$(pid_of redis)" || { cat "$DIR/redis/redis.log" >&2; die "Redis did not start"; }

	# One set of secrets for the whole cluster: every replica must verify what another signed.
	local dsn="postgres://pvauth@127.0.0.1:$PG_PORT/pvauth?sslmode=disable&connect_timeout=5&statement_timeout=10000&idle_in_transaction_session_timeout=30000"
	(
		umask 077
		cat >"$DIR/cluster.env" <<ENV
DSN='$dsn'
SECRETS_DEFAULT='$(od -An -N36 -tx1 /dev/urandom | tr -d ' \n')'
SECRETS_CIPHER='$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')'
SECRETS_FILE_SIGNATURE='$(od -An -N36 -tx1 /dev/urandom | tr -d ' \n')'
RATELIMIT_STORE=redis
RATELIMIT_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/0'
SERVE_PUBLIC_HOST=127.0.0.1
SERVE_PUBLIC_BASE_URL='http://localhost:$PUBLIC_PORT'
SERVE_PUBLIC_TRUSTED_PROXIES=127.0.0.1/32
SERVE_ADMIN_HOST=127.0.0.1
WEBAUTHN_RP_ORIGINS='http://localhost:$PUBLIC_PORT'
REPLICAS=$replicas
LOADTEST=$loadtest
ENV
	)
	if [ "$loadtest" -eq 1 ]; then
		local r
		for r in login login_email otp_verify ip mobile_challenge device_register_challenge confirmation_initiate mobile_biometric; do
			echo "RATELIMIT_RULES_${r^^}_LIMIT=1000000000" >>"$DIR/cluster.env"
		done
	fi

	say "migrations, once (pvauth migrate sql --yes)"
	(
		set -a
		# shellcheck disable=SC1091
		. "$DIR/cluster.env"
		set +a
		"$DIR/pvauth" migrate sql --yes "$DSN"
	) >"$DIR/migrate.log" 2>&1 || { cat "$DIR/migrate.log" >&2; die "migrations failed"; }
	sed 's/^/    /' "$DIR/migrate.log"

	for ((i = 0; i < replicas; i++)); do
		start_replica "$i"
	done
	for ((i = 0; i < replicas; i++)); do
		wait_replica "$i"
	done
	say "$replicas replicas ready (127.0.0.1:$(replica_public_port 0)…, logs $DIR/replica-N.log)"

	write_haproxy_cfg "$replicas"
	"$haproxy" -c -q -f "$DIR/haproxy.cfg" || die "haproxy rejects $DIR/haproxy.cfg"
	"$haproxy" -D -f "$DIR/haproxy.cfg" -p "$DIR/haproxy.pid" >"$DIR/haproxy.log" 2>&1 ||
		{ cat "$DIR/haproxy.log" >&2; die "haproxy did not start"; }
	wait_port "$PUBLIC_PORT" 10 || die "haproxy does not listen on $PUBLIC_PORT"
	# Wait until HAProxy's own health checks have seen every replica up.
	for ((i = 0; i < 50; i++)); do
		[ "$(http_status "$PUBLIC_PORT" /health/ready)" = 200 ] && break
		sleep 0.2
	done
	[ "$(http_status "$PUBLIC_PORT" /health/ready)" = 200 ] || die "no replica is ready behind HAProxy"
	trap - EXIT
	print_urls
}

# shellcheck disable=SC2153 # REPLICAS, LOADTEST, DSN come from cluster.env
print_urls() {
	# shellcheck disable=SC1091
	. "$DIR/cluster.env" # REPLICAS, LOADTEST, DSN, …
	local i
	cat <<EOF

pvauth cluster: $REPLICAS replicas on PostgreSQL 15 + Redis, HAProxy in front$([ "$LOADTEST" = 1 ] && echo " (--loadtest: limits raised)")
  public (HAProxy)          http://127.0.0.1:$PUBLIC_PORT      issuer $SERVE_PUBLIC_BASE_URL
  admin  (HAProxy)          http://127.0.0.1:$ADMIN_PORT
  HAProxy statistics        http://127.0.0.1:$STATS_PORT/
  first replica only        http://127.0.0.1:$ONE_PUBLIC_PORT (public) http://127.0.0.1:$ONE_ADMIN_PORT (admin), through HAProxy
EOF
	for ((i = 0; i < REPLICAS; i++)); do
		printf '  replica %-2d direct        http://127.0.0.1:%s (public) http://127.0.0.1:%s (admin)\n' \
			"$i" "$(replica_public_port "$i")" "$(replica_admin_port "$i")"
	done
	cat <<EOF
  PostgreSQL                ${DSN%%\?*}
  Redis                     $RATELIMIT_REDIS_URL
  state, logs, secrets      $DIR (cluster.env)

  $DIR/pvauth identities create --endpoint http://127.0.0.1:$ADMIN_PORT --email you@example.com --password-stdin
  go run ./contrib/loadtest -public http://127.0.0.1:$PUBLIC_PORT -admin http://127.0.0.1:$ADMIN_PORT -c 16 -d 10s
  bash contrib/cluster/run.sh status | down
EOF
}

# shellcheck disable=SC2153 # REPLICAS, LOADTEST, DSN come from cluster.env
cmd_status() {
	[ -e "$DIR/cluster.env" ] || { say "no cluster in $DIR"; return 1; }
	# shellcheck disable=SC1091
	. "$DIR/cluster.env"
	local i bad=0 st
	if [ -f "$DIR/pg/data/postmaster.pid" ] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
		echo "postgresql  up     127.0.0.1:$PG_PORT"
	else
		echo "postgresql  DOWN"
		bad=1
	fi
	if alive redis; then echo "redis       up     pid $(pid_of redis) 127.0.0.1:$REDIS_PORT"; else
		echo "redis       DOWN"
		bad=1
	fi
	for ((i = 0; i < REPLICAS; i++)); do
		if alive "replica-$i"; then
			st="$(http_status "$(replica_public_port "$i")" /health/ready || echo "-")"
			printf 'replica-%-3s up     pid %s 127.0.0.1:%s /health/ready %s\n' "$i" "$(pid_of "replica-$i")" "$(replica_public_port "$i")" "$st"
			[ "$st" = 200 ] || bad=1
		else
			echo "replica-$i   DOWN"
			bad=1
		fi
	done
	if alive haproxy; then
		st="$(http_status "$PUBLIC_PORT" /health/ready || echo "-")"
		echo "haproxy     up     pid $(pid_of haproxy) 127.0.0.1:$PUBLIC_PORT /health/ready $st"
		# HAProxy's view of its servers (name, status, health check) from the CSV statistics.
		if command -v curl >/dev/null 2>&1; then
			curl -fsS "http://127.0.0.1:$STATS_PORT/;csv" 2>/dev/null |
				awk -F, '$2 ~ /^r[0-9]+$/ {printf "  haproxy %-10s %-4s %-6s %s\n", $1, $2, $18, $37}'
		fi
	else
		echo "haproxy     DOWN"
		bad=1
	fi
	return "$bad"
}

cmd_run() {
	cmd_up "$@"
	trap 'echo; cmd_down; exit 0' INT TERM
	say "running; Ctrl-C stops everything"
	while true; do sleep 1; done
}

case "${1:-help}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
run) shift; cmd_run "$@" ;;
restart) shift; cmd_restart "$@" ;;
urls) print_urls ;;
help | -h | --help) usage ;;
*) usage >&2; exit 2 ;;
esac
