# MariaDB on 127.0.0.1:3306 (root, no password, database `test`).
start_mariadb() {
  export TASKTRACK_TEST_MYSQL_URL="${TASKTRACK_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
  local how="start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
  if ! mysqladmin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
    echo "MariaDB is down; starting it"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >/dev/null 2>&1 || true
    wait_for "mysqladmin -h 127.0.0.1 -P 3306 -uroot ping" 30 || service_unavailable MariaDB "$how"
  fi
}
stop_mariadb() { :; }
