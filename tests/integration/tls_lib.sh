# Shell functions for TLS tests and measurements: a throw-away CA and server certificates, and
# stunnel as a TLS front for a plain-HTTP server. Source it; every function works under `set -eu`.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# make_ca DIR NAME: DIR/NAME.pem (certificate) and DIR/NAME.key, a self-signed CA valid for a day.
make_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=sqs2pg test $2" \
    -keyout "$1/$2.key" -out "$1/$2.pem" 2>/dev/null
}

# make_server_cert DIR NAME CA SAN: DIR/NAME.pem and DIR/NAME.key, signed by DIR/CA, for the
# subjectAltName SAN (e.g. "IP:127.0.0.1,DNS:localhost").
make_server_cert() {
  local dir=$1 name=$2 ca=$3 san=$4
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$san" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" -CAcreateserial \
    -days 1 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
}

# start_stunnel DIR SERVICE... where each SERVICE is "accept_port:connect_port:cert_name": runs
# stunnel in the foreground (in the background of this shell), logging every connection and
# handshake to DIR/stunnel.log, and waits until every accept port answers. Sets STUNNEL_PID.
start_stunnel() {
  local dir=$1 spec accept connect cert
  shift
  {
    echo "foreground = yes"
    echo "pid ="
    echo "debug = info"
    echo "output = $dir/stunnel.log"
    for spec in "$@"; do
      IFS=: read -r accept connect cert <<<"$spec"
      echo "[front-$accept]"
      echo "accept = 127.0.0.1:$accept"
      echo "connect = 127.0.0.1:$connect"
      echo "cert = $dir/$cert.pem"
      echo "key = $dir/$cert.key"
    done
  } >"$dir/stunnel.conf"
  stunnel4 "$dir/stunnel.conf" >"$dir/stunnel.out" 2>&1 &
  STUNNEL_PID=$!
  for spec in "$@"; do
    accept=${spec%%:*}
    for _ in $(seq 1 100); do
      (echo >"/dev/tcp/127.0.0.1/$accept") 2>/dev/null && break
      kill -0 "$STUNNEL_PID" 2>/dev/null || { cat "$dir/stunnel.out" "$dir/stunnel.log" >&2; return 1; }
      sleep 0.1
    done
  done
}

stop_stunnel() {
  if [[ -n "${STUNNEL_PID:-}" ]] && kill -0 "$STUNNEL_PID" 2>/dev/null; then
    kill "$STUNNEL_PID" 2>/dev/null || true
    wait "$STUNNEL_PID" 2>/dev/null || true
  fi
  STUNNEL_PID=
}
