#!/usr/bin/env bash
# The measurements of the README's "Performance" section, interleaved in one session so that
# the machine's drift hits every target alike: contrib/loadtest against
#
#   sqlite    one `serve --dev` on a SQLite file, RATELIMIT_ENABLED=false
#   pg        one `serve` on PostgreSQL 15 (fsync on, its own database), RATELIMIT_ENABLED=false
#   pg3-lb    three replicas behind HAProxy (run.sh up --loadtest: limits raised, counted in Redis)
#   pg1-lb    the first of them alone, behind the same HAProxy
#   pg1       the first of them, direct
#   NAME=PUBLIC_URL,ADMIN_URL   a server started by hand (another cluster: CLUSTER_PORT_BASE)
#   base-sqlite, base-pg   as sqlite and pg, built from the commit BASE_COMMIT names (a
#             git worktree), to measure a change against the commit before it in one run
#
#   bash contrib/cluster/bench.sh [rounds (2)] [scenarios (all)] [targets]
#
# Environment: C (16), D (10s) for -c and -d; OUT (a temp dir) keeps every report;
# PROFILE=1 runs the pg and sqlite servers with PROFILING=cpu (cpu.pprof in $OUT).
# Everything it starts is stopped at the end (or on Ctrl-C).
#
# One load test run per scenario and target, targets interleaved; results.tsv has a row
# for each: the rate and latencies, and, over the measured window (the last D seconds of
# the run), the cores that everything measured used (servers, PostgreSQL backends, Redis,
# HAProxy, the load generator), that CPU time per iteration, and "foreign": the cores that
# processes not started here took meanwhile. The
# machine may be shared: before each run the script waits up to QUIET_WAIT seconds
# (default 10) for the CPUs to be at least 80 % idle; rates from runs with foreign CPU
# are low, while the CPU time per iteration stays comparable.
#
# Servers get HASHERS_ARGON2_MAX_WAIT=30s (unless set): the load test's setup creates 16
# identities at once, which on a busy machine can exceed the default 2 s wait for a
# hashing slot and answer 503.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ROUNDS="${1:-2}"
FIRST_ROUND="${FIRST_ROUND:-1}"
SCENARIOS="${2:-all}"
TARGETS="${3:-sqlite pg pg3-lb pg1-lb pg1}"
C="${C:-16}"
D="${D:-10s}"
OUT="${OUT:-$(mktemp -d /tmp/pvauth-bench.XXXXXX)}"
BASE="${CLUSTER_PORT_BASE:-18080}"
export CLUSTER_PORT_BASE="$BASE"
export CLUSTER_DIR="${CLUSTER_DIR:-/tmp/pvauth-cluster-$(id -u)}"
mkdir -p "$OUT"
command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
export HASHERS_ARGON2_MAX_WAIT="${HASHERS_ARGON2_MAX_WAIT:-30s}"

say() { printf '==> %s\n' "$*"; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

say "building pvauth and the load generator into $OUT"
(cd "$repo" && go build -tags sqlite -o "$OUT/pvauth" ./cmd/pvauth && go build -o "$OUT/loadtest" ./contrib/loadtest)
if [ -n "${BASE_COMMIT:-}" ]; then
	say "building pvauth at $BASE_COMMIT into $OUT/pvauth-base"
	git -C "$repo" worktree add -f --detach "$OUT/base-src" "$BASE_COMMIT" >/dev/null
	(cd "$OUT/base-src" && go build -tags sqlite -o "$OUT/pvauth-base" ./cmd/pvauth)
	git -C "$repo" worktree remove --force "$OUT/base-src"
fi
git -C "$repo" rev-parse --short HEAD >"$OUT/commit" 2>/dev/null || true

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	bash "$here/run.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# REPLICAS: how many replicas the cluster runs (default 3; pg3-lb is all of them).
# REPLICA_GOMAXPROCS: the replicas' GOMAXPROCS (default: the Go runtime's, the CPU count).
env ${REPLICA_GOMAXPROCS:+GOMAXPROCS=$REPLICA_GOMAXPROCS} LOG_LEVEL=error PVAUTH_BIN="$OUT/pvauth" \
	bash "$here/run.sh" up --replicas "${REPLICAS:-3}" --loadtest | tee "$OUT/cluster.txt"
# shellcheck disable=SC1091
. "$CLUSTER_DIR/cluster.env"
PG_PORT=$((BASE + 352))
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

start_server() { # name public-port admin-port dsn [--dev]   (BIN: another binary)
	local name=$1 pub=$2 adm=$3 dsn=$4 bin=${BIN:-$OUT/pvauth}
	shift 4
	rm -rf "${OUT:?}/$name"
	mkdir -p "$OUT/$name"
	port_in_use "$pub" && { echo "port $pub is in use" >&2; exit 1; }
	(
		cd "$OUT/$name"
		export DSN="$dsn" SERVE_PUBLIC_PORT="$pub" SERVE_ADMIN_PORT="$adm" SERVE_PUBLIC_HOST=127.0.0.1 \
			RATELIMIT_ENABLED=false RATELIMIT_STORE=memory LOG_LEVEL=error \
			SECRETS_DEFAULT SECRETS_CIPHER SECRETS_FILE_SIGNATURE
		[ "${PROFILE:-0}" = 1 ] && export PROFILING=cpu
		exec "$bin" serve "$@" </dev/null >"$OUT/$name/serve.log" 2>&1
	) &
	pids+=($!)
	local i
	for ((i = 0; i < 300; i++)); do
		port_in_use "$pub" && return 0
		sleep 0.1
	done
	cat "$OUT/$name/serve.log" >&2
	exit 1
}

# SQLite: serve --dev on a file (migrates itself; the generated secrets are not used
# since the cluster's are in the environment).
start_server sqlite $((BASE + 100)) $((BASE + 101)) "sqlite://$OUT/sqlite/pvauth.sqlite?_fk=true" --dev
# PostgreSQL, one replica, a database of its own on the cluster's server, migrated once.
# shellcheck source=scripts/as_pg.sh
source "$repo/scripts/as_pg.sh"
create_db() { as_pg "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $1 OWNER pvauth"; }
create_db pvauth_single
PG1_DSN="${DSN/\/pvauth\?/\/pvauth_single?}"
"$OUT/pvauth" migrate sql --yes "$PG1_DSN" >/dev/null
start_server pg $((BASE + 110)) $((BASE + 111)) "$PG1_DSN"
if [ -n "${BASE_COMMIT:-}" ]; then
	BIN="$OUT/pvauth-base" start_server base-sqlite $((BASE + 120)) $((BASE + 121)) "sqlite://$OUT/base-sqlite/pvauth.sqlite?_fk=true" --dev
	create_db pvauth_base
	BASE_DSN="${DSN/\/pvauth\?/\/pvauth_base?}"
	"$OUT/pvauth-base" migrate sql --yes "$BASE_DSN" >/dev/null
	BIN="$OUT/pvauth-base" start_server base-pg $((BASE + 130)) $((BASE + 131)) "$BASE_DSN"
fi

urls() { # target -> "public admin"
	case "$1" in
	sqlite) echo "http://127.0.0.1:$((BASE + 100)) http://127.0.0.1:$((BASE + 101))" ;;
	pg) echo "http://127.0.0.1:$((BASE + 110)) http://127.0.0.1:$((BASE + 111))" ;;
	base-sqlite) echo "http://127.0.0.1:$((BASE + 120)) http://127.0.0.1:$((BASE + 121))" ;;
	base-pg) echo "http://127.0.0.1:$((BASE + 130)) http://127.0.0.1:$((BASE + 131))" ;;
	pg3-lb) echo "http://127.0.0.1:$BASE http://127.0.0.1:$((BASE + 1))" ;;
	pg1-lb) echo "http://127.0.0.1:$((BASE + 3)) http://127.0.0.1:$((BASE + 4))" ;;
	pg1) echo "http://127.0.0.1:$((BASE + 10)) http://127.0.0.1:$((BASE + 11))" ;;
	*=*,*) # name=PUBLIC_URL,ADMIN_URL: another server, started by hand
		local u="${1#*=}"
		echo "${u%%,*} ${u#*,}" ;;
	*) echo "unknown target $1" >&2; exit 2 ;;
	esac
}

# Busy and total jiffies of all CPUs.
cpu_jiffies() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

wait_quiet() {
	local i b0 t0 b1 t1
	for ((i = 0; i < ${QUIET_WAIT:-10}; i += 2)); do
		read -r b0 t0 <<<"$(cpu_jiffies)"
		sleep 2
		read -r b1 t1 <<<"$(cpu_jiffies)"
		[ $(((b1 - b0) * 100 / (t1 - t0 + 1))) -lt 20 ] && return 0
	done
	return 0
}

# Our processes: the servers and the load generator (their command lines name $OUT or
# $CLUSTER_DIR), the cluster's PostgreSQL with its backends, Redis and HAProxy.
our_pids() {
	local pm
	pgrep -f "$OUT/|$CLUSTER_DIR/" || true
	pm="$(head -n1 "$CLUSTER_DIR/pg/data/postmaster.pid" 2>/dev/null)" && [ -n "$pm" ] && pgrep -P "$pm"
	cat "$CLUSTER_DIR/redis.pid" 2>/dev/null || true
}

# Every half second while a run goes on: time, CPU jiffies of our processes, busy and
# total jiffies of the machine.
sampler() {
	local pids
	# cat, not awk on the files: a process that ends between pgrep and the read must not
	# spoil the sum (awk gives up on a file it cannot open).
	while true; do
		mapfile -t pids < <(our_pids)
		printf '%s %s %s\n' "$(date +%s.%N)" \
			"$(cd /proc && cat "${pids[@]/%//stat}" 2>/dev/null </dev/null | awk '{s += $14 + $15} END {print s + 0}')" \
			"$(cpu_jiffies)"
		sleep 0.5
	done
}

if [ "$SCENARIOS" = all ]; then
	SCENARIOS="introspect refresh biometric confirmation confirmation_events streams client_credentials oauth2_introspect login"
fi
SCENARIOS="${SCENARIOS//,/ }"
printf 'round\ttarget\tscenario\trequests\terrors\tper_s\tp50\tp99\tours_cores\tcpu_ms_per_iteration\tforeign_cores\n' >"$OUT/results.tsv"

# One load test run per scenario and target (targets interleaved within each scenario),
# so that the CPU time of each can be told apart.
for ((r = FIRST_ROUND; r < FIRST_ROUND + ROUNDS; r++)); do
	for s in $SCENARIOS; do
		for t in $TARGETS; do
			read -r pub adm <<<"$(urls "$t")"
			f="$OUT/${t%%=*}.$s.$r.txt"
			wait_quiet
			echo "# $t $s round $r $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >"$f"
			sampler >"$OUT/samples" &
			sp=$!
			"$OUT/loadtest" -public "$pub" -admin "$adm" -c "$C" -d "$D" -scenario "$s" >>"$f" 2>&1 || true
			tend="$(date +%s.%N)"
			sleep 0.6
			kill "$sp" 2>/dev/null || true
			wait "$sp" 2>/dev/null || true
			# The measured window: the D seconds before the load generator ended (its
			# report follows the window at once). Ours in cores, foreign in cores.
			read -r ours foreign <<<"$(awk -v te="$tend" -v d="${D%s}" '
				{ t[NR] = $1; o[NR] = $2; b[NR] = $3; a[NR] = $4 }
				END {
					e = 0; for (i = 1; i <= NR; i++) if (t[i] <= te - 0.25) e = i
					st = 0; for (i = 1; i <= e; i++) if (t[i] <= t[e] - d + 0.5) st = i
					if (e == 0 || st == 0 || a[e] == a[st]) { print "- -"; exit }
					dt = t[e] - t[st]
					ours = (o[e] - o[st]) / 100 / dt
					# A process missing from one sample but not the other spoils the sums.
					if (ours < 0 || ours > 2.05) { print "- -"; exit }
					printf "%.2f %.2f\n", ours, ((b[e] - b[st]) - (o[e] - o[st])) * 2 / (a[e] - a[st])
				}' "$OUT/samples")"
			echo "# CPU in the measured window: ours $ours cores, foreign $foreign cores (of 2)" >>"$f"
			row="$(awk -v s="$s" '$1 == s && $2 ~ /^[0-9]+$/ {print $2, $3, $4, $5, $7; exit}' "$f")"
			read -r n e rate p50 p99 <<<"${row:-0 - - - -}"
			per="$(awk -v o="$ours" -v r="$rate" 'BEGIN {if (r > 0 && o != "-") printf "%.3f", o * 1000 / r; else print "-"}')"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "${t%%=*}" "$s" "$n" "$e" "$rate" "$p50" "$p99" \
				"$ours" "$per" "$foreign" | tee -a "$OUT/results.tsv"
			[ -n "$row" ] || tail -n 3 "$f" >&2
		done
	done
done
say "reports in $OUT (results.tsv)"
