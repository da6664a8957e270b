#!/usr/bin/env bash
# The HTTP floor: CPU per message of receive + delete alone (no signing, no JSON parser, no
# masking, no Postgres), through sqs2pg's libcurl transport and through plain keep-alive sockets,
# against fauxqs on loopback; with --tls also through libcurl over TLS (stunnel in front of fauxqs,
# as bench/tls_cost). Beside `sqs2pg run`'s own figure it says how much of sqs2pg's CPU is the
# request path, and how much of that is libcurl's. --attributes compares instead what the receive's
# attribute names cost fauxqs: the sockets client asking for 5 names (as sqs2pg) and for 2.
#
#   bench/http_floor.sh [--n 60000] [--repeat 3] [--lanes 8] [--tls | --attributes] [--build build-bench]
#
# BUILD is a Release build configured with -DSQS2PG_BUILD_BENCH=ON (it holds bench/http_floor/
# http_floor and sqs2pg, which fills the queues). Each round fills a fresh queue per transport
# and drains it; the transports alternate, so drift in the machine's load hits both. CPU is the
# client's user+sys over the drain (getrusage; start-up excluded), also reported for fauxqs.
# Everything runs on 127.0.0.1 in a private stack that is stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=60000
repeat=3
lanes=8
tls=0
attributes=0
build="$root/build-bench"
while (($#)); do
  case "$1" in
    --n) n=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --lanes) lanes=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    --attributes) attributes=1; shift ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
floor="$build/bench/http_floor/http_floor"
[[ -x $floor && -x $build/sqs2pg ]] || {
  echo "http_floor: build $build first: cmake -DCMAKE_BUILD_TYPE=Release -DSQS2PG_BUILD_BENCH=ON" >&2
  exit 2
}

work=$(mktemp -d /var/tmp/sqs2pg-http-floor.XXXXXX)
chmod 755 "$work"
source "$root/tests/integration/tls_lib.sh"
cleanup() {
  stop_stunnel
  "$root/scripts/stack" down --dir "$work/stack" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

source "$("$root/scripts/stack" up --dir "$work/stack" 2>/dev/null)"
endpoint="$AWS_ENDPOINT_URL_SQS"
port=${endpoint##*:}
fauxqs_pid=$(cat "$work/stack/fauxqs.pid")
transports=(curl sockets)
((attributes)) && transports=(sockets sockets-2-attributes)
if ((tls)); then
  make_ca "$work" ca
  make_server_cert "$work" server ca "IP:127.0.0.1,DNS:localhost"
  tls_port=$(free_port)
  start_stunnel "$work" "$tls_port:$port:server"
  transports+=(curl-tls)
fi

# N sample-like messages as NDJSON (the sample file's bodies, cycled).
python3 - "$root/data/sample_data.json.gz" "$n" >"$work/messages.ndjson" <<'PY'
import gzip, json, sys
samples = json.load(gzip.open(sys.argv[1], "rt"))
for i in range(int(sys.argv[2])):
    print(json.dumps(samples[i % len(samples)]))
PY

fauxqs_cpu() { awk '{print $14 + $15}' "/proc/$fauxqs_pid/stat"; }
ticks=$(getconf CLK_TCK)
printf '| round | transport | messages | requests | wall s | client CPU s | client CPU µs/msg | fauxqs CPU µs/msg |\n'
printf '|---:|---|---:|---:|---:|---:|---:|---:|\n'
for r in $(seq 1 "$repeat"); do
  for transport in "${transports[@]}"; do
    queue="floor_${transport}_$r"
    "$build/sqs2pg" send --create-queue --queue "$queue" --endpoint-url "$endpoint" "$work/messages.ndjson" >/dev/null
    url="http://sqs.us-east-1.localhost:$port/000000000000/$queue"
    before=$(fauxqs_cpu)
    how=(--transport "$transport" --port "$port")
    if [[ $transport == curl-tls ]]; then
      how=(--transport curl --scheme https --ca-file "$work/ca.pem" --port "$tls_port")
    elif [[ $transport == sockets-2-attributes ]]; then
      how=(--transport sockets --attributes 2 --port "$port")
    fi
    line=$("$floor" "${how[@]}" --host 127.0.0.1 --queue-url "$url" --lanes "$lanes")
    after=$(fauxqs_cpu)
    eval "$(tr ' ' '\n' <<<"$line" | grep -E '^(messages|requests|wall_s|cpu_s|cpu_us_per_msg)=')"
    [[ $messages == "$n" ]] || { echo "http_floor: $transport deleted $messages of $n" >&2; exit 1; }
    awk -v r="$r" -v t="$transport" -v m="$messages" -v q="$requests" -v w="$wall_s" -v c="$cpu_s" \
      -v u="$cpu_us_per_msg" -v f=$((after - before)) -v k="$ticks" \
      'BEGIN { printf "| %d | %s | %d | %d | %.2f | %.3f | %.2f | %.1f |\n", r, t, m, q, w, c, u, f / k * 1e6 / m }'
  done
done
