#!/usr/bin/env bash
# The runtime image's package list cannot drift from the binary: the library packages in
# deploy/docker/runtime-packages.txt must be exactly the packages owning the shared libraries
# sqs2pg links against directly (ELF NEEDED entries, resolved to files by ldd, owners by dpkg -S),
# and the Dockerfile's runtime stage must install that list and nothing else.
# Usage: runtime_packages.sh BINARY SOURCE_DIR
set -euo pipefail
binary=$1
src=$2
list=$src/deploy/docker/runtime-packages.txt
dockerfile=$src/deploy/docker/Dockerfile

ldd_out=$(ldd "$binary")
derived=$(
  for needed in $(objdump -p "$binary" | awk '$1 == "NEEDED" {print $2}'); do
    path=$(awk -v n="$needed" '$1 == n && $2 == "=>" {print $3}' <<<"$ldd_out")
    [[ -n "$path" ]] || { echo "runtime_packages: ldd does not resolve $needed" >&2; exit 1; }
    # /lib is a symlink to /usr/lib on bookworm; dpkg knows one spelling or the other.
    dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path"
  done | cut -d: -f1 | sort -u
)
listed=$(grep -v '^#' "$list" | grep -v 'not linked' | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep . | sort -u)
extras=$(grep -v '^#' "$list" | grep 'not linked' | sed -e 's/#.*//' -e 's/[[:space:]]//g' | sort -u)

status=0
if [[ "$derived" != "$listed" ]]; then
  echo "runtime_packages: $list's library packages differ from what $binary links against:" >&2
  diff <(echo "$listed") <(echo "$derived") | sed 's/^/  /' >&2 || true
  echo "  (< listed only, > linked only)" >&2
  status=1
fi
for extra in $extras; do
  if grep -qx "$extra" <<<"$derived"; then
    echo "runtime_packages: $extra is marked 'not linked' but the binary links against it" >&2
    status=1
  fi
done
# The runtime stage installs the list file's words and no package named in the Dockerfile itself.
runtime_stage=$(awk '/^FROM debian:bookworm-slim/ {on = 1} on' "$dockerfile")
grep -q "COPY deploy/docker/runtime-packages.txt" <<<"$runtime_stage" || {
  echo "runtime_packages: the runtime stage does not copy runtime-packages.txt" >&2; status=1; }
installs=$(grep -c "apt-get install" <<<"$runtime_stage")
install_args=$(sed -n '/apt-get install/,/^ *&&/p' <<<"$runtime_stage" | tr -d '\\\n' | sed -e 's/.*--no-install-recommends//' -e 's/&&.*//' -e 's/^ *//' -e 's/ *$//' | tr -s ' ')
if [[ "$installs" != 1 || "$install_args" != "\$(sed -e 's/#.*//' /tmp/runtime-packages.txt)" ]]; then
  echo "runtime_packages: the runtime stage must install exactly the list (one apt-get install of \$(sed ... runtime-packages.txt)), found: $install_args" >&2
  status=1
fi
((status == 0)) && echo "runtime_packages: $(wc -w <<<"$derived") library packages match, plus: $(xargs <<<"$extras")"
exit $status
