#!/usr/bin/env bash
# TLS end to end, against real peers: stunnel (with a certificate from a CA made here) in front of
# fauxqs, and a private PostgreSQL cluster with ssl=on and a certificate from the same CA.
#   - sqs2pg send/run over https with --ca-file (and with AWS_CA_BUNDLE) succeed;
#   - without the CA, with the wrong CA, or with a certificate for another host they fail (exit 1)
#     with a message naming the certificate problem;
#   - sqs2pg run --db "... sslmode=verify-full sslrootcert=ca.pem" loads; the wrong CA fails.
# Everything listens on 127.0.0.1, on free ports, and is stopped on exit, failed or not.
# Usage: tls_test.sh SQS2PG_BINARY
set -euo pipefail
sqs2pg=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/integration/tls_lib.sh"

# Under /var/tmp and world-searchable: as root the cluster runs as postgres, which must reach it.
work=$(mktemp -d /var/tmp/sqs2pg-tls.XXXXXX)
chmod 755 "$work"
stack="$work/stack"
cleanup() {
  stop_stunnel
  "$root/scripts/stack" down --dir "$stack" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_ok NAME CMD...: runs the command; it must exit 0.
expect_ok() {
  local name=$1 rc=0
  shift
  "$@" >"$work/out" 2>"$work/err" || rc=$?
  if [[ $rc -eq 0 ]]; then pass "$name"; else fail "$name: exit $rc: $(cat "$work/err")"; fi
}
# expect_fail NAME EXIT_CODE PATTERN CMD...: the command must exit EXIT_CODE with PATTERN (grep -E)
# in its stderr.
expect_fail() {
  local name=$1 code=$2 pattern=$3 rc=0
  shift 3
  "$@" >"$work/out" 2>"$work/err" || rc=$?
  if [[ $rc -ne $code ]]; then
    fail "$name: exit $rc, expected $code; stderr: $(cat "$work/err")"
  elif ! grep -Eq -- "$pattern" "$work/err"; then
    fail "$name: stderr does not match /$pattern/: $(cat "$work/err")"
  else
    pass "$name: $(tail -n 1 "$work/err")"
  fi
}

# --- certificates: a good CA, a wrong one, a server cert for 127.0.0.1/localhost, one for another host
make_ca "$work" ca
make_ca "$work" wrong-ca
make_server_cert "$work" server ca "IP:127.0.0.1,DNS:localhost"
make_server_cert "$work" otherhost ca "DNS:sqs.other.example"

# --- fauxqs and Postgres, then stunnel in front of fauxqs
env_file=$("$root/scripts/stack" up --dir "$stack" 2>"$work/stack.log") || { cat "$work/stack.log" >&2; exit 1; }
source "$env_file"
unset AWS_CA_BUNDLE SQS2PG_KEY_FILE SQS2PG_KEYS AWS_PROFILE
fauxqs_port=${AWS_ENDPOINT_URL_SQS##*:}
tls_port=$(free_port)
other_port=$(free_port)
start_stunnel "$work" "$tls_port:$fauxqs_port:server" "$other_port:$fauxqs_port:otherhost"
endpoint="https://127.0.0.1:$tls_port"
# The stack's plain endpoint must not be used by accident.
unset AWS_ENDPOINT_URL_SQS

"$sqs2pg" keygen --out "$work/key" >/dev/null
queue="tls_$$"
table="tls_logins_$$"
data="$root/data/sample_data.json.gz"

# --- SQS over TLS
expect_ok "send over https with --ca-file" \
  "$sqs2pg" send --create-queue --queue "$queue" --endpoint-url "$endpoint" --ca-file "$work/ca.pem" "$data"
grep -q "^sent 100 messages" "$work/out" || fail "send did not report 100 messages: $(cat "$work/out")"
expect_fail "no CA: the system store does not trust the test CA" 1 "SSL certificate problem.*--ca-file" \
  "$sqs2pg" send --queue "$queue" --endpoint-url "$endpoint" "$data"
expect_fail "wrong CA" 1 "SSL certificate problem" \
  "$sqs2pg" send --queue "$queue" --endpoint-url "$endpoint" --ca-file "$work/wrong-ca.pem" "$data"
expect_fail "certificate for another host" 1 "(subject name|does not match).*127\.0\.0\.1" \
  "$sqs2pg" send --queue "$queue" --endpoint-url "https://127.0.0.1:$other_port" --ca-file "$work/ca.pem" "$data"
expect_fail "missing CA file is a usage error" 2 "CA file $work/nope.pem \(from --ca-file\)" \
  "$sqs2pg" send --queue "$queue" --endpoint-url "$endpoint" --ca-file "$work/nope.pem" "$data"
expect_fail "wrong CA from AWS_CA_BUNDLE" 1 "SSL certificate problem" \
  env AWS_CA_BUNDLE="$work/wrong-ca.pem" "$sqs2pg" send --queue "$queue" --endpoint-url "$endpoint" "$data"
expect_ok "AWS_CA_BUNDLE is honoured" \
  env AWS_CA_BUNDLE="$work/ca.pem" "$sqs2pg" send --queue "$queue" --endpoint-url "$endpoint" "$data"
expect_ok "--ca-file wins over AWS_CA_BUNDLE" \
  env AWS_CA_BUNDLE="$work/wrong-ca.pem" "$sqs2pg" send --queue "$queue" --endpoint-url "$endpoint" \
  --ca-file "$work/ca.pem" "$data"
expect_ok "localhost matches the certificate's DNS name" \
  "$sqs2pg" send --queue "$queue" --endpoint-url "https://localhost:$tls_port" --ca-file "$work/ca.pem" "$data"

# --- Postgres with ssl=on and the test CA's certificate; the key belongs to postgres, mode 0600.
# scripts/stack keeps the cluster outside the stack dir and records where.
pgdata="$(cat "$stack/cluster")/data"
cp "$work/server.pem" "$pgdata/tls-server.pem"
cp "$work/server.key" "$pgdata/tls-server.key"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$pgdata/tls-server.pem" "$pgdata/tls-server.key"; fi
chmod 600 "$pgdata/tls-server.key"
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d sqs2pg "$@"; }
psql_admin -c "ALTER SYSTEM SET ssl_cert_file = '$pgdata/tls-server.pem'" \
  -c "ALTER SYSTEM SET ssl_key_file = '$pgdata/tls-server.key'" -c "ALTER SYSTEM SET ssl = on" \
  -c "SELECT pg_reload_conf()" >/dev/null
tls_db="host=127.0.0.1 port=$PGPORT user=postgres dbname=sqs2pg sslmode=verify-full sslrootcert=$work/ca.pem"
for _ in $(seq 1 50); do
  [[ $(psql -X -tAc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" "$tls_db" 2>/dev/null) == t ]] && break
  sleep 0.1
done

# The queue holds 400 messages (the four sends of 100 above that succeeded, each with new message
# ids); run drains it over TLS to both peers.
expect_ok "run: SQS over https, Postgres with sslmode=verify-full" \
  "$sqs2pg" run --queue "$queue" --endpoint-url "$endpoint" --ca-file "$work/ca.pem" --key-file "$work/key" \
  --table "$table" --wait-seconds 0 --db "$tls_db"
grep -q "^received 400, loaded 396, duplicates skipped 0, rejected 4, deleted 400" "$work/out" ||
  fail "run summary: $(cat "$work/out")"
rows=$(psql -X -tAc "SELECT count(*) FROM $table" "$tls_db")
[[ $rows == 396 ]] && pass "396 rows in $table" || fail "$rows rows in $table, expected 396"
expect_fail "Postgres certificate from the wrong CA" 1 "cannot connect to Postgres.*certificate verify failed" \
  "$sqs2pg" run --queue "$queue" --endpoint-url "$endpoint" --ca-file "$work/ca.pem" --key-file "$work/key" \
  --table "$table" --wait-seconds 0 \
  --db "host=127.0.0.1 port=$PGPORT user=postgres dbname=sqs2pg sslmode=verify-full sslrootcert=$work/wrong-ca.pem"
expect_fail "Postgres URI form passes sslrootcert through too" 1 "certificate verify failed" \
  "$sqs2pg" run --queue "$queue" --endpoint-url "$endpoint" --ca-file "$work/ca.pem" --key-file "$work/key" \
  --table "$table" --wait-seconds 0 \
  --db "postgresql://postgres@127.0.0.1:$PGPORT/sqs2pg?sslmode=verify-full&sslrootcert=$work/wrong-ca.pem"

handshakes=$(grep -c "accepted connection" "$work/stunnel.log" || true)
echo "stunnel accepted $handshakes TLS connections"
if ((failures)); then
  echo "tls_test: $failures check(s) failed" >&2
  exit 1
fi
echo "tls_test: all checks passed"
