#!/bin/sh
# run.sh - golden diagnostics: every DIR/NAME.poly must be rejected by
# polyc exactly as DIR/NAME.err says.
#
#   sh tests/diag/run.sh POLYC DIR        (from the repository root)
#
# For each NAME.poly this runs `POLYC DIR/NAME.poly -S -o TMP/out.c`, with
# the words of DIR/NAME.args added when that file exists (e.g. -D options),
# and checks that polyc exits with status 1, that its standard error equals
# NAME.err byte for byte (paths in it read "DIR/NAME.poly", so run it with
# the DIR the .err files were written for), and that nothing was written
# to TMP (no output, no leftover temporary).  Prints one line per case and
# a summary; exits 1 if any case failed, 2 on bad usage.
set -u

if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -d "$2" ]; then
	echo "usage: sh tests/diag/run.sh POLYC DIR" >&2
	exit 2
fi
polyc=$1 dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/polyc-diag.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT INT TERM
pass=0 fail=0

# check NAME: run one case; prints "ok NAME" or "FAIL NAME: why".
check() {
	name=$1 args=
	out="$work/out" err="$work/$name.stderr"
	mkdir "$out"
	[ -f "$dir/$name.args" ] && args=$(cat "$dir/$name.args")
	# shellcheck disable=SC2086  # the .args words are meant to split
	"$polyc" "$dir/$name.poly" $args -S -o "$out/out.c" 2>"$err" >/dev/null
	status=$?
	why=
	if [ "$status" -ne 1 ]; then
		why="exit status $status, expected 1"
	elif ! cmp -s "$err" "$dir/$name.err"; then
		why="stderr differs from $dir/$name.err:
$(diff "$dir/$name.err" "$err" | sed 's/^/    /')"
	elif [ -n "$(ls -A "$out")" ]; then
		why="wrote $(ls -A "$out" | tr '\n' ' ')despite the error"
	fi
	rm -rf "$out"
	if [ -z "$why" ]; then
		echo "ok   $name"
		pass=$((pass + 1))
	else
		echo "FAIL $name: $why"
		fail=$((fail + 1))
	fi
}

for poly in "$dir"/*.poly; do
	[ -e "$poly" ] || continue
	name=$(basename "$poly" .poly)
	check "$name"
done
echo "diag: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
