#!/usr/bin/env bash
# make deb, checked: CPack builds the .deb from this build directory (into a temporary directory,
# so a concurrent `make deb` is not disturbed), its Depends come from dpkg-shlibdeps and name the
# same library packages the runtime image installs, it holds the binary, the unit, the example
# config and the man page, and the binary it installs runs.
# Usage: package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log" >&2; exit 1; }
deb=$(ls "$work"/out/sqs2pg_*.deb)
echo "package_test: built $(basename "$deb")"

depends=$(dpkg-deb -f "$deb" Depends)
[[ -n "$depends" ]] || { echo "package_test: empty Depends" >&2; exit 1; }
# Package names only (versions and alternatives dropped); spdlog's shlibs name libspdlog1.10-fmt9,
# the virtual package libspdlog1.10 provides.
dep_names=$(tr ',' '\n' <<<"$depends" | sed -e 's/(.*)//' -e 's/|.*//' -e 's/[[:space:]]//g' -e 's/^libspdlog1.10-fmt9$/libspdlog1.10/' | grep . | sort -u)
listed=$(grep -v '^#' "$src/deploy/docker/runtime-packages.txt" | grep -v 'not linked' | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep . | sort -u)
if [[ "$dep_names" != "$listed" ]]; then
  echo "package_test: Depends (dpkg-shlibdeps) and deploy/docker/runtime-packages.txt disagree:" >&2
  diff <(echo "$listed") <(echo "$dep_names") >&2 || true
  exit 1
fi
echo "package_test: Depends: $depends"

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/sqs2pg ./usr/lib/systemd/system/sqs2pg.service \
  ./usr/lib/systemd/system/sqs2pg-maintain.service ./usr/lib/systemd/system/sqs2pg-maintain.timer \
  ./usr/share/doc/sqs2pg/examples/sqs2pg.toml ./usr/share/man/man1/sqs2pg.1.gz; do
  grep -q " $f\$" <<<"$contents" || { echo "package_test: $f is not in the package" >&2; exit 1; }
done

root=$work/root
dpkg -x "$deb" "$root"
grep -qx 'ExecStart=/usr/bin/sqs2pg run --follow --metrics-addr 127.0.0.1:9800' \
  "$root/usr/lib/systemd/system/sqs2pg.service" || { echo "package_test: the unit's ExecStart is not /usr/bin/sqs2pg" >&2; exit 1; }
grep -qx 'ExecStart=/usr/bin/sqs2pg maintain' "$root/usr/lib/systemd/system/sqs2pg-maintain.service" ||
  { echo "package_test: sqs2pg-maintain.service's ExecStart is not /usr/bin/sqs2pg maintain" >&2; exit 1; }
version=$("$root/usr/bin/sqs2pg" --version)
[[ "$version" == "sqs2pg $(dpkg-deb -f "$deb" Version)" ]] || { echo "package_test: --version says '$version'" >&2; exit 1; }
check_help=$("$root/usr/bin/sqs2pg" check --help)
grep -q '^Preflight' <<<"$check_help" || { echo "package_test: check --help does not describe check" >&2; exit 1; }
man=$(zcat "$root/usr/share/man/man1/sqs2pg.1.gz")
grep -q '^\.TH SQS2PG' <<<"$man" || { echo "package_test: no man page header" >&2; exit 1; }
echo "package_test: $version; check --help and the man page from the extracted package"
