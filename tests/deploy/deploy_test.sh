#!/usr/bin/env bash
# make deploy-test: the deploy files run for real, in podman, on this machine (issue 19).
#   1 image    deploy/docker/Dockerfile built as it is; the image drains the sample, passes check,
#              answers /healthz and /readyz, runs as uid 10001 on a read-only root, stops on SIGTERM
#   2 compose  docker-compose.yml up with Debian's docker-compose on podman's Docker API
#   3 deb      the .deb on a bare bookworm: apt-get install pulls every Depends, --version, man,
#              a drain, then remove and purge leave nothing of the package behind
#   4 systemd  the .deb in a container booted with systemd 252: sqs2pg.service loads the sample,
#              logs to the journal, stops in time with the messages in hand released, keeps its
#              systemd-analyze security grade; sqs2pg-maintain.timer's service runs maintain
#   5 k8s      kubectl kustomize renders base and overlay, every object is validated offline
#              (kubernetes-models, pinned in tools/k8s-validate), and the image runs with the
#              Deployment's container spec (init container, user, read-only root, env, args, probes)
# One PASS/FAIL line per step, with the reason; exit 1 if any failed. Needs root (podman, apt).
#
# Everything runs on the host network and talks to a private stack (scripts/stack up --dir) on
# 127.0.0.1 only. Base images cannot be pulled here: they are made with debootstrap and tagged
# with the names the deploy files use (stand-ins, see docs/operations.md "What deploy-test proves").
# Cached between runs: the debootstrap tarballs and the stand-in images, keyed by the UTC date, in
# $SQS2PG_DEPLOY_CACHE (default /var/tmp/sqs2pg-deploy-cache) and podman's store; older dates are
# deleted. Everything else (containers, the sqs2pg images, volumes, the stack, temp files) is removed
# at exit, pass or fail.
#
# Usage: tests/deploy/deploy_test.sh [BUILD_DIR] [STEP...]   (BUILD_DIR holds sqs2pg and the .deb)
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
shift || true
steps=("$@")
((${#steps[@]})) || steps=(1 2 3 4 5)
[[ $(id -u) -eq 0 ]] || { echo "deploy_test: needs root (podman, apt-get, debootstrap)" >&2; exit 2; }

bin=$build/sqs2pg
deb=$(ls "$build"/sqs2pg_*.deb 2>/dev/null | tail -n 1)
[[ -x "$bin" && -f "$deb" ]] || { echo "deploy_test: need $build/sqs2pg and the .deb: make deb" >&2; exit 2; }

cache=${SQS2PG_DEPLOY_CACHE:-/var/tmp/sqs2pg-deploy-cache}
day=$(date -u +%Y%m%d)
work=$(mktemp -d /tmp/sqs2pg-deploy-test.XXXXXX)
chmod 0711 "$work"
label=sqs2pg-deploy-test=$$
export DEPLOY_TEST_LABEL=$label DEPLOY_TEST_ID=$$
tag=localhost/sqs2pg:deploy-test-$$
t_start=$(date +%s)

log() { echo "deploy_test: $*" >&2; }

# --- the engine: podman + runc with the settings this machine type needs, in our own config ---
export CONTAINERS_CONF=$work/containers.conf
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
netns = "host"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[engine.runtimes]
runc = ["/usr/sbin/runc"]
EOF
podman_run=(podman run --network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --label "$label")

stack_dir=$work/stack
service_pid=
cleanup() {
  local ids
  ids=$(podman ps -aq --filter "label=$label" 2>/dev/null)
  [[ -n "$ids" ]] && podman rm -f -t 0 $ids >/dev/null 2>&1
  [[ -n "$service_pid" ]] && kill "$service_pid" 2>/dev/null
  podman volume ls -q 2>/dev/null | grep "^sqs2pg-dt-$$-" | xargs -r podman volume rm -f >/dev/null 2>&1
  if [[ -f "$work/compose-project" ]]; then
    local project
    project=$(cat "$work/compose-project")
    podman ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r podman rm -f -t 0 >/dev/null 2>&1
    podman volume ls -q | grep "^${project}_" | xargs -r podman volume rm -f >/dev/null 2>&1
  fi
  podman rmi docker.io/library/sqs2pg:local >/dev/null 2>&1
  podman rmi -f "$tag" >/dev/null 2>&1
  "$src/scripts/stack" down --dir "$stack_dir" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- what the machine needs (a bare machine has none of it) ---
need=()
for p in podman runc debootstrap docker-compose uidmap curl python3-yaml; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || need+=("$p")
done
# node and npm (tools/k8s-validate) may come from elsewhere: NodeSource's nodejs bundles npm.
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { echo "FAIL setup: apt-get install ${need[*]}"; exit 1; }
fi
command -v kubectl >/dev/null || kubectl_missing=1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

# --- base images: debootstrap tarballs cached per day, imported and tagged as the files name them ---
rootfs_tar() {  # NAME [debootstrap args...] -> path of a cached tarball
  local name=$1; shift
  local tar=$cache/$day/$name.tar
  if [[ ! -s "$tar" ]]; then
    mkdir -p "$cache/$day"
    local dir=$cache/$day/$name.root
    rm -rf "$dir"
    debootstrap --variant=minbase "$@" bookworm "$dir" http://deb.debian.org/debian >"$cache/$day/$name.log" 2>&1 ||
      { log "debootstrap $name failed: see $cache/$day/$name.log"; return 1; }
    # What a container image leaves out: the downloaded .debs and the package lists (apt-get
    # update comes first in every Dockerfile), and for slim the documentation and translations.
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/*
    if [[ $name == slim ]]; then
      rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/*
    fi
    tar -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar" && rm -rf "$dir"
  fi
  echo "$tar"
}
image_from() {  # IMAGE-NAME TARBALL
  podman image exists "$1" || podman import -q "$2" "$1" >/dev/null
}
base_images() {
  # Yesterday's tarballs and stand-in images go: the cache is keyed by the UTC date.
  mkdir -p "$cache"
  find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$day" -exec rm -rf {} + 2>/dev/null
  if ! podman image exists "localhost/sqs2pg-deploy/bookworm:$day"; then
    podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/sqs2pg-deploy/' |
      xargs -r podman rmi -f >/dev/null 2>&1
    podman image prune -f >/dev/null 2>&1  # the build stages left by older bases
  fi
  local minbase slim systemd
  # The three debootstraps wait on the mirror more than on the CPU: run them side by side.
  rootfs_tar minbase >/dev/null & local a=$!
  rootfs_tar slim >/dev/null & local b=$!
  rootfs_tar systemd --include=systemd,systemd-sysv,dbus >/dev/null & local c=$!
  wait $a && wait $b && wait $c || return 1
  minbase=$(rootfs_tar minbase) && slim=$(rootfs_tar slim) &&
    systemd=$(rootfs_tar systemd --include=systemd,systemd-sysv,dbus) || return 1
  image_from "localhost/sqs2pg-deploy/bookworm:$day" "$minbase" &&
    image_from "localhost/sqs2pg-deploy/bookworm-slim:$day" "$slim" &&
    image_from "localhost/sqs2pg-deploy/bookworm-systemd:$day" "$systemd" || return 1
  podman tag "localhost/sqs2pg-deploy/bookworm:$day" docker.io/library/debian:bookworm &&
    podman tag "localhost/sqs2pg-deploy/bookworm-slim:$day" docker.io/library/debian:bookworm-slim
}

# --- the stack: private Postgres + fauxqs on loopback ---
stack_up() {
  local env_file
  env_file=$("$src/scripts/stack" up --dir "$stack_dir" 2>"$work/stack.log") || { cat "$work/stack.log" >&2; return 1; }
  # shellcheck disable=SC1090
  source "$env_file"
  export AWS_ENDPOINT_URL_STS=$AWS_ENDPOINT_URL_SQS  # fauxqs answers STS GetCallerIdentity (check)
  DB="host=127.0.0.1 port=$PGPORT dbname=$PGDATABASE user=$PGUSER"
}
sample_count=$(zcat "$src/data/sample_data.json.gz" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
send_sample() {  # QUEUE
  "$bin" send --create-queue --queue "$1" "$src/data/sample_data.json.gz" >/dev/null
}
counts() {  # TABLE -> "ROWS REJECTS" (0 0 before the tables exist)
  psql -tAc "SELECT (SELECT count(*) FROM $1), (SELECT count(*) FROM ${1}_rejects)" -F ' ' 2>/dev/null || echo "0 0"
}
queue_state() {  # QUEUE -> "WAITING IN_FLIGHT" from sqs2pg check's GetQueueAttributes line
  SQS2PG_DB=$DB "$bin" check --queue "$1" --key-file "$work/keyring" --table "q_$1" 2>/dev/null |
    sed -n 's/.*allowed: \([0-9]*\) messages waiting, \([0-9]*\) in flight.*/\1 \2/p'
}
wait_for() {  # SECONDS COMMAND...: until it succeeds
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do (($(date +%s) < deadline)) || return 1; sleep 0.5; done
}
loaded() {  # TABLE ROWS REJECTS
  [[ $(counts "$1") == "$2 $3" ]]
}
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# --- the steps; each runs in a subshell, writes its log to $work/stepN.log, and ends with
#     `ok REASON` or `bad REASON` ---
ok() { echo "$*" >"$reason_file"; exit 0; }
bad() { echo "$*" >"$reason_file"; exit 1; }

image() {  # the Dockerfile as it is, built once per run (steps 1 and 2 use it)
  podman image exists "$tag" && return 0
  podman build --pull=never --network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    -f "$src/deploy/docker/Dockerfile" -t "$tag" "$src"
}

step1() {  # the image
  local t0 size port c rc elapsed out
  t0=$(date +%s)
  image || bad "podman build failed (log above)"
  echo "built in $(($(date +%s) - t0)) s"
  size=$(podman image inspect --format '{{.Size}}' "$tag")
  echo "$size" >"$work/image-size"
  [[ $(podman image inspect --format '{{.Config.User}}' "$tag") == 10001:10001 ]] || bad "image USER is not 10001:10001"

  # The keyring as the Kubernetes pod has it: the container user's own 0600 file on a read-only mount.
  mkdir -m 0700 "$work/k1" && cp "$work/keyring" "$work/k1/keyring" && chmod 0600 "$work/k1/keyring"
  chown -R 10001:10001 "$work/k1"
  port=$(free_port)
  local args=(--read-only --cap-drop=ALL --security-opt=no-new-privileges -v "$work/k1:/run/sqs2pg:ro"
    -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION -e AWS_ENDPOINT_URL_SQS -e AWS_ENDPOINT_URL_STS
    -e "SQS2PG_DB=$DB" -e SQS2PG_KEY_FILE=/run/sqs2pg/keyring -e SQS2PG_QUEUE=deploy-image
    -e SQS2PG_TABLE=image_logins -e "SQS2PG_METRICS_ADDR=127.0.0.1:$port")
  send_sample deploy-image
  out=$("${podman_run[@]}" --rm "${args[@]}" "$tag" run) || bad "run (drain) exited $?"
  echo "drain: $out"
  loaded image_logins 99 1 || bad "drain: rows and rejects are $(counts image_logins), want 99 1"
  "${podman_run[@]}" --rm "${args[@]}" "$tag" check || bad "check failed in the image"

  c=sqs2pg-dt-$$-image
  send_sample deploy-image
  "${podman_run[@]}" -d --name "$c" "${args[@]}" "$tag" >/dev/null || bad "run --follow did not start"
  wait_for 30 http_ok "http://127.0.0.1:$port/healthz" || bad "/healthz did not answer within 30 s"
  wait_for 30 http_ok "http://127.0.0.1:$port/readyz" || bad "/readyz did not answer 200 within 30 s"
  wait_for 30 loaded image_logins 198 2 || bad "follow: rows and rejects are $(counts image_logins), want 198 2"
  [[ $(podman exec "$c" id -u) == 10001 ]] || bad "the process does not run as uid 10001"
  podman exec "$c" sh -c 'echo x >/probe' 2>/dev/null && bad "the root filesystem is writable"
  [[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c") == true ]] || bad "not run with a read-only root"
  t0=$(date +%s)
  podman stop -t 30 "$c" >/dev/null
  elapsed=$(($(date +%s) - t0))
  rc=$(podman inspect --format '{{.State.ExitCode}}' "$c")
  podman logs "$c" 2>&1 | tail -n 3
  [[ $rc == 0 && $elapsed -lt 30 ]] || bad "podman stop: exit $rc after $elapsed s (want 0 within the 30 s grace)"
  ok "image built from the Dockerfile as it is ($((size / 1000000)) MB); drain 99 rows + 1 reject, check passes, /healthz and /readyz 200, uid 10001 on a read-only root with no capabilities, podman stop: exit 0 in $elapsed s"
}

step2() {  # compose: Debian's docker-compose on podman's Docker API, host network
  local sock=$work/podman.sock project=sqs2pgdt$$ pg_port sqs_port metrics_port out
  echo "$project" >"$work/compose-project"
  # Stand-ins for the two public images the compose file names (no registry is reachable here).
  if ! podman image exists "localhost/sqs2pg-deploy/postgres-15:$day"; then
    mkdir -p "$work/pg-image"
    cp "$src/tests/deploy/standin/postgres-entrypoint.sh" "$work/pg-image/"
    cat >"$work/pg-image/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
EOF
    podman build --pull=never --network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
      -t "localhost/sqs2pg-deploy/postgres-15:$day" "$work/pg-image" || bad "could not build the Postgres stand-in"
  fi
  if ! podman image exists "localhost/sqs2pg-deploy/node:$day"; then
    mkdir -p "$work/node-image"
    cat >"$work/node-image/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
EOF
    podman build --pull=never --network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
      -t "localhost/sqs2pg-deploy/node:$day" "$work/node-image" || bad "could not build the Node stand-in"
  fi
  podman tag "localhost/sqs2pg-deploy/postgres-15:$day" docker.io/library/postgres:15-bookworm
  podman tag "localhost/sqs2pg-deploy/node:$day" docker.io/library/node:20-bookworm-slim
  image || bad "podman build failed (log above)"
  # compose names it sqs2pg:local; Docker's API reads a short name as docker.io/library/...
  podman tag "$tag" docker.io/library/sqs2pg:local

  podman system service --time=0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
  service_pid=$!
  echo "$service_pid" >"$work/service.pid"
  wait_for 20 test -S "$sock" || bad "podman system service did not open its socket"

  pg_port=$(free_port); sqs_port=$(free_port); metrics_port=$(free_port)
  python3 "$src/tests/deploy/compose_host_network.py" "$src/docker-compose.yml" "$work/compose.yml" \
    "$pg_port" "$sqs_port" "$metrics_port" || bad "could not rewrite docker-compose.yml for the host network"
  cp -r "$src/data" "$work/data"
  export DOCKER_HOST=unix://$sock COMPOSE_PROJECT_NAME=$project
  local dc=(docker-compose -f "$work/compose.yml" --project-directory "$work")
  # Podman runs healthchecks from systemd timers; this host has no systemd, so run them here.
  ( while sleep 2; do for c in $(podman ps -q --filter "label=com.docker.compose.project=$project"); do
      podman healthcheck run "$c" >/dev/null 2>&1; done; done ) &
  local pump=$!
  timeout 600 "${dc[@]}" up -d --no-build || { kill $pump; "${dc[@]}" logs --no-color | tail -n 40; bad "docker-compose up failed"; }
  local db="host=127.0.0.1 port=$pg_port dbname=sqs2pg user=sqs2pg"
  ready_count() { PGPASSWORD=sqs2pg psql "$db" -tAc "SELECT (SELECT count(*) FROM user_logins) || ' ' || (SELECT count(*) FROM user_logins_rejects)" 2>/dev/null; }
  loaded_compose() { [[ $(ready_count) == "99 1" ]]; }
  if ! wait_for 120 loaded_compose; then
    kill $pump; "${dc[@]}" logs --no-color | tail -n 40
    bad "compose: user_logins/rejects are '$(ready_count)', want 99 1"
  fi
  wait_for 30 http_ok "http://127.0.0.1:$metrics_port/readyz" || { kill $pump; bad "compose sqs2pg: /readyz not 200"; }
  out=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -c '^sqs2pg_')
  kill $pump
  local oneshots
  oneshots=$(podman ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}} {{.Status}}' |
    awk '/_(keygen|sender)_/ {print}')
  echo "$oneshots"
  [[ $(grep -c 'Exited (0)' <<<"$oneshots") == 2 ]] || bad "compose keygen and sender did not both exit 0: $(xargs <<<"$oneshots")"
  timeout 120 "${dc[@]}" down -v -t 30 || bad "docker-compose down failed"
  rc=$(podman ps -a --filter "label=com.docker.compose.project=$project" -q | wc -l)
  ok "docker-compose up: postgres and fauxqs healthy, keygen and sender exited 0, sqs2pg loaded 99 rows + 1 reject and served /readyz and $out sqs2pg_ metrics; down -v removed it ($rc containers left)"
}

step3() {  # the .deb on a bare bookworm
  local c=sqs2pg-dt-$$-deb out version
  mkdir -m 0700 "$work/k3" && cp "$work/keyring" "$work/k3/keyring"
  send_sample deploy-deb
  "${podman_run[@]}" -d --name "$c" -v "$deb:/tmp/$(basename "$deb"):ro" -v "$work/k3:/root/k:ro" \
    -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION -e AWS_ENDPOINT_URL_SQS -e "SQS2PG_DB=$DB" \
    "localhost/sqs2pg-deploy/bookworm:$day" sleep infinity >/dev/null || bad "container did not start"
  podman exec "$c" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./tmp/sqs2pg_*.deb' ||
    bad "apt-get install ./$(basename "$deb") failed on a bare bookworm"
  version=$(podman exec "$c" sqs2pg --version) || bad "sqs2pg --version failed after install"
  [[ $version == "sqs2pg $(dpkg-deb -f "$deb" Version)" ]] || bad "sqs2pg --version says '$version'"
  podman exec "$c" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null && man -P cat sqs2pg | grep -q "^NAME"' ||
    bad "man sqs2pg shows no page"
  podman exec "$c" sqs2pg run --queue deploy-deb --table deb_logins --key-file /root/k/keyring ||
    bad "the installed sqs2pg could not drain"
  loaded deb_logins 99 1 || bad "drain: rows and rejects are $(counts deb_logins), want 99 1"
  # remove: the package's files go (conffiles may stay, as policy allows); then purge. The
  # package is not in any repository, so once removed apt no longer knows it: dpkg --purge
  # finishes the removed one, and apt-get purge is tried on a second install.
  leftovers='while read -r f; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done </tmp/files; ls -d /etc/sqs2pg /var/lib/sqs2pg /usr/share/doc/sqs2pg 2>/dev/null; true'
  podman exec "$c" sh -c 'dpkg-query -L sqs2pg >/tmp/files; dpkg-query -W -f="\${Conffiles}\n" sqs2pg >/tmp/conffiles' || bad "dpkg -L sqs2pg failed"
  podman exec "$c" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq sqs2pg >/dev/null' || bad "apt-get remove sqs2pg failed"
  out=$(podman exec "$c" sh -c "$leftovers" | grep -vxFf <(podman exec "$c" awk '{print $1}' /tmp/conffiles) || true)
  [[ -z "$out" ]] || bad "left behind after apt-get remove: $(xargs <<<"$out")"
  podman exec "$c" sh -c 'dpkg --purge sqs2pg >/dev/null && ! dpkg-query -W sqs2pg >/dev/null 2>&1' || bad "dpkg --purge after remove failed"
  out=$(podman exec "$c" sh -c "$leftovers")
  [[ -z "$out" ]] || bad "left behind after remove and purge: $(xargs <<<"$out")"
  podman exec "$c" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./tmp/sqs2pg_*.deb >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq sqs2pg >/dev/null && ! dpkg-query -W sqs2pg >/dev/null 2>&1' ||
    bad "apt-get purge of an installed sqs2pg failed"
  out=$(podman exec "$c" sh -c "$leftovers")
  [[ -z "$out" ]] || bad "left behind after apt-get purge: $(xargs <<<"$out")"
  ok "apt-get install ./$(basename "$deb") on a bare bookworm pulled its Depends from the mirror; '$version' answers; man sqs2pg shows the page; drain 99 rows + 1 reject; apt-get remove, dpkg --purge, and apt-get purge of a second install left none of its files"
}

systemd_container() {  # NAME: a container with systemd as PID 1, running, the .deb installed
  local c=$1
  "${podman_run[@]}" -d --name "$c" --privileged --systemd=always -v "$deb:/tmp/$(basename "$deb"):ro" \
    "localhost/sqs2pg-deploy/bookworm-systemd:$day" /lib/systemd/systemd >/dev/null || return 1
  wait_for 60 sh -c "podman exec $c systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded'" || return 1
  # The environment, not the unit: podman makes the container's root mount private, and systemd
  # in a container leaves the propagation as its manager set it (it makes / shared only when the
  # kernel started it). LoadCredential mounts a ramfs in a helper's mount namespace and moves it
  # to /run/credentials/UNIT; on a private root that move never reaches PID 1's namespace, so the
  # service sees an empty 0700 root-owned directory ("Permission denied"). A host systemd has /
  # shared; so do we, once. No unit drop-in is involved.
  podman exec "$c" mount --make-rshared / || return 1
  podman exec "$c" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./tmp/sqs2pg_*.deb >/dev/null'
}

step4() {  # systemd for real
  local c=sqs2pg-dt-$$-systemd out t0 elapsed exposure state journal
  send_sample deploy-systemd
  systemd_container "$c" || bad "the systemd container did not boot or the .deb did not install"
  # A keyring where LoadCredential reads it (root's, 0600), the configuration in /etc, and the
  # emulator's placeholder credentials in the optional environment file (0600).
  # /etc/sqs2pg itself stays 0755: the service's dynamic user reads sqs2pg.toml there.
  podman exec -i "$c" sh -c 'install -d -m 0755 /etc/sqs2pg; umask 077; cat >/etc/sqs2pg/keyring' <"$work/keyring"
  podman exec -i "$c" sh -c 'umask 022; cat >/etc/sqs2pg/sqs2pg.toml' <<EOF
log-format = "json"
[run]
queue = "deploy-systemd"
endpoint-url = "$AWS_ENDPOINT_URL_SQS"
region = "$AWS_REGION"
db = "$DB"
table = "systemd_logins"
[maintain]
db = "$DB"
table = "systemd_logins"
EOF
  podman exec -i "$c" sh -c 'umask 077; cat >/etc/sqs2pg/sqs2pg.env' <<EOF
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
EOF
  # The unit listens on 127.0.0.1:9800 and the container shares the host's network: only if that
  # port is taken by something else does the test move it (ExecStart only, in /run, not shipped).
  if ! port_free 9800; then
    podman exec "$c" sh -c 'mkdir -p /run/systemd/system/sqs2pg.service.d && printf "[Service]\nExecStart=\nExecStart=/usr/bin/sqs2pg run --follow --metrics-addr 127.0.0.1:0\n" >/run/systemd/system/sqs2pg.service.d/test-port.conf && systemctl daemon-reload'
    echo "port 9800 is in use on this host: the test's drop-in moves --metrics-addr to port 0"
  fi
  podman exec "$c" systemctl start sqs2pg || bad "systemctl start sqs2pg failed"
  if ! wait_for 60 loaded systemd_logins 99 1; then
    podman exec "$c" journalctl -u sqs2pg --no-pager | tail -n 20
    bad "systemctl start sqs2pg: rows and rejects are $(counts systemd_logins), want 99 1"
  fi
  journal=$(podman exec "$c" journalctl -u sqs2pg -o cat --no-pager)
  grep -q '"level":"info"' <<<"$journal" || bad "journalctl -u sqs2pg shows no JSON log line"
  # Messages in hand at the stop: a second sample arrives, and the stop comes while it is loading.
  send_sample deploy-systemd
  sleep 0.3
  t0=$(date +%s)
  podman exec "$c" systemctl stop sqs2pg || bad "systemctl stop failed"
  elapsed=$(($(date +%s) - t0))
  state=$(podman exec "$c" systemctl show sqs2pg -p Result -p ExecMainStatus --value | xargs)
  [[ $state == "success 0" && $elapsed -lt 30 ]] || bad "systemctl stop: Result/ExecMainStatus '$state' after $elapsed s (TimeoutStopSec=30)"
  # Released: whatever was received is loaded or visible again, nothing left hidden in flight.
  local rows rejects waiting inflight
  read -r rows rejects <<<"$(counts systemd_logins)"
  read -r waiting inflight <<<"$(queue_state deploy-systemd)"
  [[ "$inflight" == 0 && $((rows + rejects + waiting)) -eq $((2 * sample_count)) ]] ||
    bad "after the stop: $rows rows, $rejects rejects, $waiting waiting, $inflight in flight (want 0 in flight, $((2 * sample_count)) in all)"
  local stopped
  stopped=$(podman exec "$c" journalctl -u sqs2pg -o cat --no-pager | grep '"event":"stop"' | tail -n 1 |
    python3 -c "import json,sys; d=json.load(sys.stdin); print(f'received {d[\"received\"]}, deleted {d[\"deleted\"]}')" 2>/dev/null)
  exposure=$(podman exec "$c" systemd-analyze security sqs2pg --no-pager | sed -n 's/.*Overall exposure level for sqs2pg.service: \([0-9.]*\) \(.*\)/\1 \2/p')
  awk -v e="${exposure%% *}" 'BEGIN {exit !(e != "" && e <= 1.5)}' || bad "systemd-analyze security sqs2pg: $exposure (documented: 1.5 OK)"
  # The maintain timer: enabled, and its service triggered now, as the tables' owner ([maintain] db).
  podman exec "$c" systemctl enable --now sqs2pg-maintain.timer || bad "could not enable sqs2pg-maintain.timer"
  out=$(podman exec "$c" systemctl list-timers --all --no-pager)  # not piped into grep -q: pipefail
  grep -q 'sqs2pg-maintain.timer' <<<"$out" || bad "the maintain timer is not scheduled"
  podman exec "$c" systemctl start sqs2pg-maintain.service || {
    podman exec "$c" journalctl -u sqs2pg-maintain --no-pager | tail -n 20; bad "sqs2pg-maintain.service failed"; }
  state=$(podman exec "$c" systemctl show sqs2pg-maintain -p Result -p ExecMainStatus --value | xargs)
  [[ $state == "success 0" ]] || bad "sqs2pg-maintain.service: $state"
  podman exec "$c" journalctl -u sqs2pg-maintain -o cat --no-pager | tail -n 3
  ok "systemctl start sqs2pg loaded 99 rows + 1 reject under DynamicUser with the LoadCredential keyring; JSON lines in journalctl -u sqs2pg; systemctl stop during a second sample: exit 0 in $elapsed s (its last run: $stopped), none left in flight; systemd-analyze security: $exposure; sqs2pg-maintain.timer enabled and its service ran maintain (exit 0)"
}

step5() {  # Kubernetes, as far as this machine allows
  local base overlay c i port
  [[ -z "${kubectl_missing:-}" ]] || bad "no kubectl with kustomize on this machine"
  base=$(kubectl kustomize "$src/deploy/kubernetes/base") || bad "kubectl kustomize base failed"
  overlay=$(kubectl kustomize "$src/deploy/kubernetes/overlays/example") || bad "kubectl kustomize overlay failed"
  printf '%s\n' "$base" >"$work/base.yaml"
  printf '%s\n' "$overlay" >"$work/overlay.yaml"
  if [[ ! -f "$src/tools/k8s-validate/node_modules/kubernetes-models/package.json" ]]; then
    npm ci --prefix "$src/tools/k8s-validate" --no-audit --no-fund --loglevel=error >/dev/null || bad "npm ci tools/k8s-validate failed"
  fi
  node "$src/tools/k8s-validate/validate.mjs" "$work/base.yaml" "$work/overlay.yaml" || bad "rendered objects do not validate (above)"

  # The Deployment's pod, as podman runs it: the init container copies the Secret's keyring into
  # the memory volume as a 0600 file, then sqs2pg runs with the same user, security context,
  # env, args and mounts; the probes are asked where the kubelet would ask them.
  port=$(free_port)
  python3 "$src/tests/deploy/pod_from_deployment.py" "$work/base.yaml" "$work/pod" "$tag" "$port" \
    "$DB" "$AWS_ENDPOINT_URL_SQS" || bad "could not derive podman commands from the Deployment"
  send_sample login-queue
  # Secret volume with defaultMode 0400 and fsGroup 10001: root's file, group 10001 may read it.
  install -d -m 0755 "$work/pod/secret"
  install -m 0440 -g 10001 "$work/keyring" "$work/pod/secret/keyring"
  for i in init main; do
    # shellcheck disable=SC1090
    source "$work/pod/$i.sh" || bad "the $i container failed (above)"
  done
  c=$(cat "$work/pod/main.name")
  wait_for 30 http_ok "http://127.0.0.1:$port/healthz" || bad "livenessProbe /healthz did not answer"
  wait_for 30 http_ok "http://127.0.0.1:$port/readyz" || bad "readinessProbe /readyz did not answer 200"
  wait_for 30 loaded user_logins 99 1 || bad "the pod's sqs2pg: rows and rejects are $(counts user_logins), want 99 1"
  [[ $(podman exec "$c" stat -c '%u %a' /run/sqs2pg/keyring) == "10001 600" ]] || bad "the keyring is not the pod user's 0600 file"
  podman stop -t 30 "$c" >/dev/null
  [[ $(podman inspect --format '{{.State.ExitCode}}' "$c") == 0 ]] || bad "the pod's sqs2pg did not exit 0 on SIGTERM"
  ok "kubectl kustomize renders base ($(grep -c '^kind:' "$work/base.yaml") objects) and overlay ($(grep -c '^kind:' "$work/overlay.yaml")); all validate against the API schemas (kubernetes-models, KEDA, Prometheus Operator); the Deployment's containers in podman: init copied the keyring to a 0600 file, sqs2pg as 10001 on a read-only root loaded 99 + 1, probes 200, SIGTERM exit 0"
}

# --- run ---
failed=0
setup_ok=1
base_images || setup_ok=0
"$bin" keygen --out "$work/keyring" >/dev/null || setup_ok=0
stack_up || setup_ok=0
((setup_ok)) || { echo "FAIL setup: base images, keyring or stack (see above)"; exit 1; }
for s in "${steps[@]}"; do
  reason_file=$work/step$s.reason
  t0=$(date +%s)
  (set -o pipefail; "step$s") >"$work/step$s.log" 2>&1
  rc=$?
  reason=$(cat "$reason_file" 2>/dev/null || echo "ended without a verdict (exit $rc)")
  if ((rc == 0)); then
    echo "PASS step $s ($(($(date +%s) - t0)) s): $reason"
  else
    failed=$((failed + 1))
    echo "FAIL step $s ($(($(date +%s) - t0)) s): $reason"
    sed 's/^/    /' "$work/step$s.log" | tail -n 25
  fi
  [[ -n "$service_pid" ]] || service_pid=$(cat "$work/service.pid" 2>/dev/null)
done
echo "deploy_test: $(($(date +%s) - t_start)) s in all"
echo "deploy_test: $(( ${#steps[@]} - failed )) passed, $failed failed"
((failed == 0))
