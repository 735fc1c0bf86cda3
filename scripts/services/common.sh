# Starts the servers the tests need and exports their URLs (sourced by scripts/test).
#
# Local servers (PostgreSQL, MariaDB, Redis) are expected to run already; a stopped one is started
# again. Emulators installed from PyPI (moto for S3/DynamoDB, SecantusDB for MongoDB) are installed
# into a virtual environment under ~/.cache/tasktrack and started on free ports for this run.
# Each service lives in its own file beside this one, defining start_<name> and stop_<name>.

SERVICES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TASKTRACK_CACHE="${TASKTRACK_CACHE:-$HOME/.cache/tasktrack}"
TASKTRACK_VENV="$TASKTRACK_CACHE/venv"
STARTED_SERVICES=()

# Fails the run under CI (or warns outside it) when a server is unreachable.
service_unavailable() {
  local name="$1" how="$2"
  if [ "${CI:-}" = "true" ]; then
    echo "ERROR: $name is unreachable and could not be started. Start it with: $how" >&2
    exit 1
  fi
  echo "WARNING: $name is unreachable; its backend tests will print SKIPPED. Start it with: $how" >&2
}

# Waits up to $2 seconds for command $1 to succeed.
wait_for() {
  local check="$1" seconds="${2:-30}"
  for _ in $(seq 1 $((seconds * 5))); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# A Python virtual environment for the emulators, reused across runs.
# Complete only once pip is in it (a half-made venv is made again); a lock keeps two concurrent
# runs from building it at the same time.
ensure_venv() {
  mkdir -p "$TASKTRACK_CACHE"
  (
    flock 9
    if [ ! -x "$TASKTRACK_VENV/bin/pip" ]; then
      rm -rf "$TASKTRACK_VENV"
      python3 -m venv "$TASKTRACK_VENV" && "$TASKTRACK_VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
  ) 9>"$TASKTRACK_CACHE/venv.lock"
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_services() {
  for f in "$SERVICES_DIR"/*.sh; do
    [ "$(basename "$f")" = common.sh ] && continue
    # shellcheck source=/dev/null
    source "$f"
    local name; name="$(basename "$f" .sh)"
    "start_$name"
    STARTED_SERVICES+=("$name")
  done
}

stop_services() {
  for name in "${STARTED_SERVICES[@]}"; do
    "stop_$name" || true
  done
}
