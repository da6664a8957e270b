#!/usr/bin/env bash
# scripts/stack must work wherever a checkout or a stack dir is: in a 0700 folder (a home, a
# mktemp -d), on a path with a space, in a checkout whose parent folders are private. And `down`
# must remove the cluster `up` put outside DIR; `up` must clean what a killed run left.
# Usage: stack_anywhere_test.sh SOURCE_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
stack="$src/scripts/stack"

tmp=$(mktemp -d) # mode 0700, like a home directory
chmod 700 "$tmp"
copy="$tmp/private checkout/sqs2pg"
stale_pid=
# Every stack this test starts is stopped and its cluster deleted, whatever fails.
cleanup() {
  set +e
  for d in "$tmp/private/stack" "$tmp/with space/stack" "$tmp/stale/stack"; do
    [[ -d "$d" ]] && "$stack" down --dir "$d" 2>/dev/null
  done
  [[ -x "$copy/scripts/stack" ]] && "$copy/scripts/stack" down 2>/dev/null
  # The orphan's dir was deleted on purpose: give `down` back the records of what to stop.
  if [[ -n "${orphan_cluster:-}" && ! -d "$tmp/orphan" ]]; then
    mkdir -p "$tmp/orphan/stack"
    echo "$orphan_cluster" >"$tmp/orphan/stack/cluster"
    echo "$orphan_fauxqs" >"$tmp/orphan/stack/fauxqs.pid"
    "$stack" down --dir "$tmp/orphan/stack" 2>/dev/null
  fi
  [[ -n "$stale_pid" ]] && kill "$stale_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# check_stack SCRIPT [--dir DIR]: up, psql answers, status says running, down deletes the cluster.
check_stack() {
  local script=$1 env_file cluster answer
  shift
  echo "== $script up $*"
  env_file=$("$script" up "$@")
  # shellcheck disable=SC1090
  answer=$(source "$env_file" && psql -X -tAc "SELECT 'connected to ' || current_database()")
  [[ "$answer" == "connected to sqs2pg" ]] || fail "psql did not reach the stack: $answer"
  cluster=$(cat "$(dirname "$env_file")/cluster")
  [[ -d "$cluster" ]] || fail "no cluster directory at $cluster"
  [[ $(stat -c %a "$cluster") == 700 ]] || fail "$cluster is not mode 0700"
  "$script" status "$@" >/dev/null || fail "status says something is down"
  "$script" down "$@"
  [[ ! -e "$cluster" ]] || fail "down left the cluster directory $cluster"
  if "$script" status "$@" >/dev/null; then fail "status says running after down"; fi
}

# A stack dir inside a 0700 folder.
mkdir -m 700 "$tmp/private"
check_stack "$stack" --dir "$tmp/private/stack"

# A stack dir whose path has a space.
check_stack "$stack" --dir "$tmp/with space/stack"

# A checkout whose parent folders are private, using its default stack dir (.run/stack). The
# emulator's node_modules is linked rather than installed again.
mkdir -p "$copy/tools/fauxqs"
cp -r "$src/scripts" "$copy/"
cp "$src/tools/fauxqs/serve.mjs" "$src/tools/fauxqs/package.json" "$copy/tools/fauxqs/"
ln -s "$src/tools/fauxqs/node_modules" "$copy/tools/fauxqs/node_modules"
check_stack "$copy/scripts/stack"

# A run killed without `down`, then its stack dir deleted: its cluster, server and fauxqs are left
# behind. The next `up` anywhere removes them. A pid file naming some other live process is not
# taken for fauxqs, and never killed.
"$stack" up --dir "$tmp/orphan/stack" >/dev/null
orphan_cluster=$(cat "$tmp/orphan/stack/cluster")
orphan_fauxqs=$(cat "$tmp/orphan/stack/fauxqs.pid")
rm -rf "$tmp/orphan"
sleep 300 &
stale_pid=$!
mkdir -p "$tmp/stale/stack"
echo "$stale_pid" >"$tmp/stale/stack/fauxqs.pid"
echo 1 >"$tmp/stale/stack/fauxqs.port"
env_file=$("$stack" up --dir "$tmp/stale/stack")
[[ ! -e "$orphan_cluster" ]] || fail "up did not remove the orphan cluster $orphan_cluster"
for _ in $(seq 1 50); do kill -0 "$orphan_fauxqs" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$orphan_fauxqs" 2>/dev/null; then fail "up did not stop the orphan's fauxqs"; fi
[[ $(cat "$tmp/stale/stack/fauxqs.pid") != "$stale_pid" ]] || fail "up took a stale pid file for fauxqs"
kill -0 "$stale_pid" || fail "up killed a process it did not start"
# shellcheck disable=SC1090
(source "$env_file" && curl -s -o /dev/null "$AWS_ENDPOINT_URL_SQS/") ||
  fail "nothing answers on fauxqs's port after a stale pid file"
"$stack" down --dir "$tmp/stale/stack"
kill -0 "$stale_pid" || fail "down killed a process it did not start"
echo "PASS"
