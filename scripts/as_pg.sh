# Sourced by scripts/test.sh and contrib/cluster/run.sh, which both run a throw-away
# PostgreSQL: is_root, and as_pg to run a command line as the database owner (initdb
# refuses root).
is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1

# Runs a command line as the database owner: `postgres` when we are root, ourselves otherwise.
as_pg() {
	if [ "$is_root" -eq 1 ]; then
		local cmd="cd / && LC_ALL=C && export LC_ALL &&" a
		for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
		su postgres -s /bin/sh -c "$cmd"
	else
		(cd / && LC_ALL=C "$@")
	fi
}
