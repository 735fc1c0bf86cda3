# SecantusDB: a MongoDB-wire-compatible server from PyPI, for the mongodb:// backend tests.
#
# No real `mongod` can be installed on the CI machines, so the tests run against SecantusDB
# (pinned below), installed into the shared virtual environment ($TASKTRACK_VENV), started on a
# port the server picks itself (`--port 0`) with in-memory storage, and stopped by PID. Exports:
#   TASKTRACK_TEST_MONGODB_URL=mongodb://127.0.0.1:PORT/?directConnection=true&retryWrites=false
#
# retryWrites=false: SecantusDB records every retryable write for 30 minutes and, on each new
# one, walks all the records (and sorts them past 10,000), so with the driver's default every
# write got slower as a run went on. A standalone server has no failover to retry across anyway.
#
# Set TASKTRACK_TEST_MONGODB_URL yourself to test against a server you started (a real
# MongoDB >= 6 is the supported target); the script then leaves it alone.
#
# Under CI=true a failure to install or start the server fails the run (service_unavailable).

SECANTUS_VERSION="0.7.0b3"
# One PID and log file per shell that sourced this, so that parallel runs never stop each other's server.
SECANTUS_PID_FILE="$TASKTRACK_CACHE/secantus.$$.pid"
SECANTUS_LOG="$TASKTRACK_CACHE/secantus.$$.log"

# The port the server announced on stderr ("secantus listening on 127.0.0.1:PORT"), if any yet.
secantus_port() {
  grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$SECANTUS_LOG" 2>/dev/null | head -n 1 | sed 's/.*://'
}

start_secantus() {
  local how='bash -c "source scripts/services/common.sh; source scripts/services/secantus.sh; start_secantus" (needs python3-venv and PyPI)'
  if [ -n "${TASKTRACK_TEST_MONGODB_URL:-}" ]; then
    return 0
  fi

  mkdir -p "$TASKTRACK_CACHE"
  : >"$SECANTUS_LOG"
  if ! ensure_venv >>"$SECANTUS_LOG" 2>&1; then
    service_unavailable SecantusDB "$how"
    return 0
  fi
  # `python -m pip` rather than bin/pip: another run may be creating the shared venv right now,
  # and bin/pip appears only at the end of that.
  # (Read the whole of pip's answer: `grep -q` would stop at the match, pip would die of SIGPIPE,
  # and under `set -o pipefail` the installed version would look missing.)
  local installed
  installed="$("$TASKTRACK_VENV/bin/python" -m pip show SecantusDB 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if [ "$installed" != "$SECANTUS_VERSION" ]; then
    echo "installing SecantusDB $SECANTUS_VERSION into $TASKTRACK_VENV"
    if ! "$TASKTRACK_VENV/bin/python" -m pip install --quiet --pre "SecantusDB==$SECANTUS_VERSION" >>"$SECANTUS_LOG" 2>&1; then
      tail -n 20 "$SECANTUS_LOG" >&2 || true
      service_unavailable SecantusDB "$how"
      return 0
    fi
  fi

  "$TASKTRACK_VENV/bin/secantusd-py" --host 127.0.0.1 --port 0 --storage-path :memory: \
    --log-level INFO >/dev/null 2>>"$SECANTUS_LOG" &
  echo $! >"$SECANTUS_PID_FILE"
  if wait_for '[ -n "$(secantus_port)" ]' 60; then
    local port; port="$(secantus_port)"
    export TASKTRACK_TEST_MONGODB_URL="mongodb://127.0.0.1:$port/?directConnection=true&retryWrites=false"
    echo "SecantusDB $SECANTUS_VERSION at 127.0.0.1:$port, PID $(cat "$SECANTUS_PID_FILE"), log $SECANTUS_LOG"
  else
    tail -n 20 "$SECANTUS_LOG" >&2 || true
    stop_secantus
    service_unavailable SecantusDB "$how"
  fi
}

stop_secantus() {
  if [ -f "$SECANTUS_PID_FILE" ]; then
    kill "$(cat "$SECANTUS_PID_FILE")" 2>/dev/null || true
    rm -f "$SECANTUS_PID_FILE"
  fi
}
