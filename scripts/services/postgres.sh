# PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`).
start_postgres() {
  export TASKTRACK_TEST_POSTGRES_URL="${TASKTRACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
  local how="pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
  if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    echo "PostgreSQL is down; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start >/dev/null 2>&1 || true
    wait_for "pg_isready -h 127.0.0.1 -p 5432" 30 || service_unavailable PostgreSQL "$how"
  fi
}
stop_postgres() { :; }
