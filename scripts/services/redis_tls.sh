# A TLS-only Redis for the rediss:// tests, on a free port for this run, that requires a client
# certificate. Its certificate and the client's are signed by a throw-away CA (the tests trust
# it with `ca_file`), all made by openssl for this run in a directory of its own (removed by
# stop_redis_tls), so that concurrent runs never share or replace each other's files.

# In $1: a CA (ca.pem), a server certificate for 127.0.0.1 (cert.pem, key.pem) and a client
# certificate (client.pem, client-key.pem), both signed by the CA. A self-signed server
# certificate would not do: rustls refuses a CA certificate as the server's own.
make_test_certificates() {
  local dir="$1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tasktrack test CA" \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/server.csr" &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    > "$dir/server.ext" &&
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 30 -extfile "$dir/server.ext" -out "$dir/cert.pem" &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=tasktrack test client" \
    -keyout "$dir/client-key.pem" -out "$dir/client.csr" &&
  printf 'extendedKeyUsage=clientAuth\n' > "$dir/client.ext" &&
  openssl x509 -req -in "$dir/client.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 30 -extfile "$dir/client.ext" -out "$dir/client.pem"
} >/dev/null 2>&1

start_redis_tls() {
  local how="bash scripts/test (needs redis-server built with TLS, and openssl)"
  REDIS_TLS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tasktrack-redis-tls.XXXXXX")
  local dir="$REDIS_TLS_DIR"
  if ! make_test_certificates "$dir"; then
    service_unavailable "Redis (TLS)" "$how"
    return 0
  fi
  REDIS_TLS_PORT=$(free_port)
  redis-server --port 0 --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
    --tls-cert-file "$dir/cert.pem" --tls-key-file "$dir/key.pem" --tls-ca-cert-file "$dir/ca.pem" \
    --tls-auth-clients yes --save "" --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >/dev/null 2>&1 || true
  if wait_for "redis-cli --tls --cacert '$dir/ca.pem' --cert '$dir/client.pem' --key '$dir/client-key.pem' -h 127.0.0.1 -p $REDIS_TLS_PORT ping" 15; then
    export TASKTRACK_TEST_REDISS_URL="rediss://127.0.0.1:$REDIS_TLS_PORT/0?ca_file=$dir/ca.pem&client_cert_file=$dir/client.pem&client_key_file=$dir/client-key.pem"
  else
    service_unavailable "Redis (TLS)" "$how"
  fi
}
stop_redis_tls() {
  [ -n "${REDIS_TLS_DIR:-}" ] || return 0
  [ -s "$REDIS_TLS_DIR/redis.pid" ] && kill "$(cat "$REDIS_TLS_DIR/redis.pid")" 2>/dev/null
  rm -rf "$REDIS_TLS_DIR"
}
