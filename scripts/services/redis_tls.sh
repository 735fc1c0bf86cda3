# A TLS-only Redis for the rediss:// tests, on a free port for this run. Its certificate is signed
# by a throw-away CA (the tests trust it with `ca_file`), both made by openssl and kept under
# ~/.cache/tasktrack/redis-tls.

# A CA (ca.pem) and a server certificate for 127.0.0.1 signed by it (cert.pem, key.pem) in $1.
# A self-signed certificate would not do: rustls refuses a CA certificate as the server's own.
make_test_certificates() {
  local dir="$1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tasktrack test CA" \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/server.csr" &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    > "$dir/server.ext" &&
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 30 -extfile "$dir/server.ext" -out "$dir/cert.pem"
} >/dev/null 2>&1

start_redis_tls() {
  local dir="$TASKTRACK_CACHE/redis-tls" how="bash scripts/test (needs redis-server built with TLS, and openssl)"
  mkdir -p "$dir"
  # Made again when missing or within an hour of expiry; the lock keeps concurrent runs apart.
  if ! (
    flock 9
    openssl x509 -checkend 3600 -noout -in "$dir/cert.pem" >/dev/null 2>&1 || make_test_certificates "$dir"
  ) 9>"$dir/certificates.lock"; then
    service_unavailable "Redis (TLS)" "$how"
    return 0
  fi
  REDIS_TLS_PORT=$(free_port)
  redis-server --port 0 --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
    --tls-cert-file "$dir/cert.pem" --tls-key-file "$dir/key.pem" --tls-ca-cert-file "$dir/ca.pem" \
    --tls-auth-clients no --save "" --appendonly no --daemonize yes \
    --pidfile "$dir/redis-$REDIS_TLS_PORT.pid" --logfile "$dir/redis.log" --dir "$dir" >/dev/null 2>&1 || true
  if wait_for "redis-cli --tls --cacert '$dir/ca.pem' -h 127.0.0.1 -p $REDIS_TLS_PORT ping" 15; then
    export TASKTRACK_TEST_REDISS_URL="rediss://127.0.0.1:$REDIS_TLS_PORT/0?ca_file=$dir/ca.pem"
  else
    service_unavailable "Redis (TLS)" "$how"
  fi
}
stop_redis_tls() {
  local pidfile="$TASKTRACK_CACHE/redis-tls/redis-${REDIS_TLS_PORT:-none}.pid"
  [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  rm -f "$pidfile"
}
