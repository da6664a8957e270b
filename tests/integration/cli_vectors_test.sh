#!/usr/bin/env bash
# The published vectors through the command line: keygen --import-hex, then mask and unmask.
#   cryptopan.tsv       line 1 the 32-byte key, then 100 raw<TAB>anonymized IPv4 pairs
#   ipcrypt_draft.tsv   variant<TAB>key<TAB>ip<TAB>encrypted_ip (deterministic and pfx rows)
# Usage: cli_vectors_test.sh SQS2PG_BINARY VECTORS_DIR
set -euo pipefail
sqs2pg=$1
vectors=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Crypto-PAn: one key file, all 100 addresses through one mask and one unmask call.
key=$(head -n 1 "$vectors/cryptopan.tsv")
SQS2PG_IMPORT_HEX=$key "$sqs2pg" keygen --ip-mask cryptopan --out "$work/cryptopan.key" >/dev/null
tail -n +2 "$vectors/cryptopan.tsv" | cut -f1 >"$work/raw"
tail -n +2 "$vectors/cryptopan.tsv" | cut -f2 >"$work/expected"
"$sqs2pg" mask --key-file "$work/cryptopan.key" --field ip <"$work/raw" >"$work/masked"
cmp -s "$work/masked" "$work/expected" || fail "cryptopan mask: $(diff "$work/masked" "$work/expected" | head -5)"
"$sqs2pg" unmask --key-file "$work/cryptopan.key" <"$work/expected" >"$work/unmasked"
cmp -s "$work/unmasked" "$work/raw" || fail "cryptopan unmask: $(diff "$work/unmasked" "$work/raw" | head -5)"
rows=$(wc -l <"$work/expected")
[ "$rows" -eq 100 ] || fail "cryptopan.tsv has $rows pairs, expected 100"

# ipcrypt: a key file per row (rows share keys, but each row stands alone).
n=0
while IFS=$'\t' read -r variant hex ip expected; do
  case "$variant" in ''|'#'*) continue ;; esac
  n=$((n + 1))
  keyfile="$work/ipcrypt.$n.key"
  "$sqs2pg" keygen --import-hex "$hex" --ip-mask "$variant" --out "$keyfile" >/dev/null
  got=$("$sqs2pg" mask --key-file "$keyfile" --field ip "$ip")
  [ "$got" = "$expected" ] || fail "$variant mask $ip: got $got, expected $expected"
  back=$("$sqs2pg" unmask --key-file "$keyfile" "$expected")
  canonical=$ip
  [ "$back" = "$canonical" ] || fail "$variant unmask $expected: got $back, expected $canonical"
done <"$vectors/ipcrypt_draft.tsv"
[ "$n" -eq 21 ] || fail "ipcrypt_draft.tsv has $n rows, expected 21"

# hmac is one-way: unmask says so and fails.
"$sqs2pg" keygen --device-id-mask hmac --out "$work/hmac.key" >/dev/null
value=$("$sqs2pg" mask --key-file "$work/hmac.key" --field device_id device-123)
if "$sqs2pg" unmask --key-file "$work/hmac.key" "$value" >/dev/null 2>"$work/err"; then
  fail "unmask of an hmac value succeeded"
fi
grep -q "cannot be decrypted" "$work/err" || fail "unmask of an hmac value: $(cat "$work/err")"

if [ "$failures" -ne 0 ]; then
  echo "$failures failures"
  exit 1
fi
echo "100 Crypto-PAn pairs and $n ipcrypt rows reproduced through sqs2pg keygen/mask/unmask"
