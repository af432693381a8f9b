#!/usr/bin/env bash
# The test command: starts a throw-away PostgreSQL 15 and a throw-away Redis on free
# loopback ports, exports their addresses as TEST_DATABASE_POSTGRESQL and TEST_REDIS_URL,
# runs every Go test with the race detector, then stops both servers and removes their
# files. Without redis-server (apt-get install redis-server) the Redis tests skip, or
# fail when CI is set. Extra arguments go to `go test` (packages, -run, -v…):
#
#   bash scripts/test.sh                         # everything
#   bash scripts/test.sh ./x/... -run TestClientIP -v
#
# Works as root (CI: the server runs as the `postgres` user, since initdb refuses root)
# and as an ordinary user. PG_BIN overrides the PostgreSQL binary directory. As root it
# also installs Debian's chromium when missing, for the login page's browser test
# (CHROMIUM_PATH points that test at another browser).
set -euo pipefail

cd "$(dirname "$0")/.."

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pg_isready; do
	if [ ! -x "$PG_BIN/$b" ]; then
		echo "scripts/test.sh: $PG_BIN/$b not found." >&2
		echo "  Install PostgreSQL 15:  sudo apt-get install -y postgresql-15" >&2
		echo "  (or set PG_BIN to the directory holding initdb, pg_ctl and pg_isready)" >&2
		exit 2
	fi
done
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	echo "scripts/test.sh: go not found on PATH" >&2
	exit 2
fi

# shellcheck source=scripts/as_pg.sh
source scripts/as_pg.sh

# The browser test of the sample login page (contrib/login-ui) drives Debian's Chromium.
# Best effort: install it when it is missing and we are root; otherwise say how. Without
# it that test skips (and fails when CI is set). Only when the run includes that package.
wants_browser=1
for a in "$@"; do
	case "$a" in
	./... | ./contrib/... | ./contrib/login-ui* | github.com/pvpipe/pvauth/... | github.com/pvpipe/pvauth/contrib/*) wants_browser=1; break ;;
	./* | ../* | github.com/pvpipe/pvauth*) wants_browser=0 ;;
	esac
done
if [ "$wants_browser" -eq 1 ] && [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
	if [ "$is_root" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
		echo "==> installing Chromium for the login page's browser test (apt-get install chromium)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends chromium </dev/null >/dev/null 2>&1 ||
			{ apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium </dev/null >/dev/null 2>&1; } ||
			echo "scripts/test.sh: warning: installing chromium failed; the browser test will skip (or fail under CI)" >&2
	else
		echo "scripts/test.sh: note: ${CHROMIUM_PATH:-/usr/bin/chromium} not found; the login page's browser test will skip." >&2
		echo "  Install it:  sudo apt-get install -y --no-install-recommends chromium   (or set CHROMIUM_PATH)" >&2
	fi
fi

# The directory must be traversable by `postgres` when we are root, and short enough for
# a unix socket path (about 100 bytes).
if [ "$is_root" -eq 1 ]; then
	if ! id postgres >/dev/null 2>&1; then
		echo "scripts/test.sh: running as root needs the 'postgres' user (created by the postgresql-15 package)" >&2
		exit 2
	fi
	PG_TMP="$(mktemp -d /tmp/pvauth-pg.XXXXXX)"
	chown postgres: "$PG_TMP"
else
	PG_TMP="$(mktemp -d "${TMPDIR:-/tmp}/pvauth-pg.XXXXXX")"
fi
PGDATA_DIR="$PG_TMP/data"
PG_LOG="$PG_TMP/postgres.log"
started=0
REDIS_PID=""

cleanup() {
	local rc=$?
	if [ -n "$REDIS_PID" ]; then
		kill "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
	fi
	if [ "$started" -eq 1 ] || [ -f "$PGDATA_DIR/postmaster.pid" ]; then
		as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$PG_TMP"
	exit "$rc"
}
# On INT/TERM, stop the tests first (their own process group, see below), then clean up.
gopid=""
on_signal() {
	if [ -n "$gopid" ]; then
		kill -"$1" -- -"$gopid" 2>/dev/null || kill -"$1" "$gopid" 2>/dev/null || true
		wait "$gopid" 2>/dev/null || true
	fi
	exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

# A port is taken when something accepts a connection on it.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# give_up LOG MESSAGE: a server did not come up; show its log and end the run.
give_up() {
	cat "$1" >&2 || true
	echo "scripts/test.sh: $2" >&2
	exit 2
}

pick_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		if ! port_in_use "$p"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

echo "==> starting a throw-away PostgreSQL ($PG_BIN) in $PG_TMP"
t0=$(date +%s)
as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust --no-sync \
	--locale=C --encoding=UTF8 >"$PG_TMP/initdb.log" 2>&1 || {
	cat "$PG_TMP/initdb.log" >&2
	echo "scripts/test.sh: initdb failed" >&2
	exit 2
}
# Appending keeps the file's owner; the last setting of a key wins.
cat >>"$PGDATA_DIR/postgresql.conf" <<CONF

# scripts/test.sh: a disposable server, durability off for speed.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_TMP'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF

PG_PORT=""
for attempt in 1 2 3 4 5; do
	port="$(pick_port)" || { echo "scripts/test.sh: no free port found" >&2; exit 2; }
	if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 -o "-p $port" start >/dev/null 2>&1; then
		started=1
		PG_PORT="$port"
		break
	fi
	# The port may have been taken between the check and the start; try another one.
	echo "    start on port $port failed (attempt $attempt), retrying" >&2
done
[ -n "$PG_PORT" ] || give_up "$PG_LOG" "PostgreSQL did not start"
for i in $(seq 1 100); do
	if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; then
		break
	fi
	[ "$i" -lt 100 ] || give_up "$PG_LOG" "PostgreSQL is not ready after 10s"
	sleep 0.1
done
echo "==> PostgreSQL ready on 127.0.0.1:$PG_PORT after $(($(date +%s) - t0))s"

export TEST_DATABASE_POSTGRESQL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"

# A throw-away Redis for the shared rate limit store: no persistence, loopback only, its
# working directory inside $PG_TMP (removed by cleanup).
if command -v redis-server >/dev/null 2>&1; then
	REDIS_PORT=""
	for attempt in 1 2 3 4 5; do
		port="$(pick_port)" || { echo "scripts/test.sh: no free port found" >&2; exit 2; }
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$PG_TMP" --logfile "$PG_TMP/redis.log" </dev/null >/dev/null 2>&1 &
		REDIS_PID=$!
		for i in $(seq 1 50); do
			if port_in_use "$port"; then
				REDIS_PORT="$port"
				break
			fi
			kill -0 "$REDIS_PID" 2>/dev/null || break
			sleep 0.1
		done
		[ -n "$REDIS_PORT" ] && break
		kill "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
		REDIS_PID=""
		echo "    Redis start on port $port failed (attempt $attempt), retrying" >&2
	done
	[ -n "$REDIS_PORT" ] || give_up "$PG_TMP/redis.log" "Redis did not start"
	echo "==> Redis ready on 127.0.0.1:$REDIS_PORT"
	export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
else
	echo "scripts/test.sh: note: redis-server not found; the Redis rate limit tests will skip (or fail under CI)." >&2
	echo "  Install it:  sudo apt-get install -y --no-install-recommends redis-server" >&2
fi

# Package arguments replace ./... so that one package can be tested alone; flags are
# passed through either way.
pkgs=(./...)
for a in "$@"; do
	case "$a" in
	./* | ../* | github.com/pvpipe/pvauth*) pkgs=() ;;
	esac
done
echo "==> go test -race -tags sqlite -count=1 -timeout 20m ${pkgs[*]} $*"
# go test runs in the background in a session of its own, so that a TERM sent to this
# script (a CI timeout) can stop it and the test binaries at once, and `wait` lets the
# traps run without waiting for the tests to end.
set +e
if command -v setsid >/dev/null 2>&1; then
	setsid go test -race -tags sqlite -count=1 -timeout 20m "${pkgs[@]}" "$@" &
	gopid=$!
	wait "$gopid"
	rc=$?
	gopid=""
else
	go test -race -tags sqlite -count=1 -timeout 20m "${pkgs[@]}" "$@"
	rc=$?
fi
set -e
echo "==> go test exited with $rc after $(($(date +%s) - t0))s"
exit "$rc"
