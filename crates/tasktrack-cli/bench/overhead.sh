#!/usr/bin/env bash
# Per-task overhead of `tasktrack run` on SQLite with a no-op command, beside the cost of spawning
# the same command from a plain shell loop (sequential) and from `xargs -P` (parallel).
#
#   bash crates/tasktrack-cli/bench/overhead.sh [TASKS] [WORKERS]
#
# Uses the release binary ($CARGO_TARGET_DIR/release/tasktrack; build it first with
# `cargo build --release -p tasktrack-cli`). Prints one line per measurement.
set -euo pipefail
n="${1:-2000}"
workers="${2:-4}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/tasktrack/target}"
tt="$target/release/tasktrack"
noop="$(command -v true)"   # an external binary, not the shell builtin
case "$noop" in /*) ;; *) noop=/bin/true ;; esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
report() { # name seconds
  awk -v name="$1" -v s="$2" -v n="$n" 'BEGIN { printf "%-40s %8.3f s  %8.1f tasks/s  %7.3f ms/task\n", name, s, n / s, 1000 * s / n }'
}

t0=$(now); for ((i = 0; i < n; i++)); do "$noop" "x$i"; done; t1=$(now)
report "shell loop, sequential" "$(echo "$t1 - $t0" | bc)"

t0=$(now); seq "$n" | xargs -P "$workers" -n 1 "$noop"; t1=$(now)
report "xargs -P $workers" "$(echo "$t1 - $t0" | bc)"

for w in 1 "$workers"; do
  export TASKTRACK_STORE="sqlite://$work/bench-$w.db"
  seq -f 'task-%06g' 1 "$n" | "$tt" -q add bench -
  t0=$(now); "$tt" -q run bench --workers "$w" -- "$noop" '{id}' > /dev/null; t1=$(now)
  report "tasktrack run --workers $w (sqlite)" "$(echo "$t1 - $t0" | bc)"
  done_count=$("$tt" --json status bench | grep -o '"succeeded": [0-9]*' | head -1)
  echo "    check: $done_count"
done
