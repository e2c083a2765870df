#!/usr/bin/env bash
# Prints a JWT signed with the test keys of tests/fixtures/jwt/ (test-only keys), for
# benchmarking routes with `auth: {jwt: ...}`:
#
#   bench/jwt-token.sh [RS256|ES256]    # default RS256 (kid rsa-1); ES256 is kid ec-1
#
# Claims: sub "bench", exp now + 1 day. Needs only openssl and coreutils.
set -euo pipefail

KEYS=$(cd "$(dirname "$0")/../tests/fixtures/jwt" && pwd)
ALG=${1:-RS256}
case "$ALG" in
    RS256) KEY=$KEYS/rsa_private.pem; KID=rsa-1 ;;
    ES256) KEY=$KEYS/ec_private.pem; KID=ec-1 ;;
    *) sed -n '2,7p' "$0"; exit 2 ;;
esac

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

head=$(printf '{"alg":"%s","typ":"JWT","kid":"%s"}' "$ALG" "$KID" | b64url)
body=$(printf '{"sub":"bench","exp":%d}' $(($(date +%s) + 86400)) | b64url)
sig() { printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -binary -sign "$KEY"; }
if [ "$ALG" = ES256 ]; then
    # openssl signs ECDSA as DER (SEQUENCE of r, s); a JWT carries r || s, 32 bytes each.
    s=$(sig | openssl asn1parse -inform DER | awk '/INTEGER/ { sub(/.*:/, ""); printf "%064s", $0 }' | tr ' ' 0)
    printf '%s.%s.%s\n' "$head" "$body" "$(printf '%b' "$(sed 's/../\\x&/g' <<<"$s")" | b64url)"
else
    printf '%s.%s.%s\n' "$head" "$body" "$(sig | b64url)"
fi
