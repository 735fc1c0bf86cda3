# Redis on 127.0.0.1:6379.
start_redis() {
  export TASKTRACK_TEST_REDIS_URL="${TASKTRACK_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
  local how='redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log'
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "Redis is down; starting it"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
    wait_for "redis-cli -h 127.0.0.1 -p 6379 ping" 30 || service_unavailable Redis "$how"
  fi
}
stop_redis() { :; }
