#!/usr/bin/env bash
# Contract test: schemathesis against a live payd, with the document the server serves
# (/api-docs/openapi.json, generated from the route table), as a user and as an admin.
#
# Usage: tools/contract.sh PAYD_BINARY ST_BINARY
# Env: PAYD_TEST_PG (server URL without database), CONTRACT_EXAMPLES (max examples per operation,
# default 8), CONTRACT_SEED (default 1), CONTRACT_WORKERS (default 2).
#
# The server runs on a free port with a fresh database and its own Redis prefix, as the development
# environment with the bootstrap admin; the per-client limits (auth rate limit, login lockout, money
# rate limits) are raised through PAYD_* variables so the fuzzer's bursts are not answered 429, and
# the event relay/consumers, gRPC and the statistics job are off (they are not under test here).
set -euo pipefail
payd=$1 st=$2
examples=${CONTRACT_EXAMPLES:-8}
seed=${CONTRACT_SEED:-1}
workers=${CONTRACT_WORKERS:-2}

. "$(dirname "${BASH_SOURCE[0]}")/live-payd.sh"
live_payd contract "$payd" \
  PAYD_RATE_LIMITS__ENABLED=false PAYD_AUTH__AUTH_RATE_LIMIT_PER_MINUTE=1000000 PAYD_AUTH__LOCKOUT_THRESHOLD=1000000 \
  PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false PAYD_STATS__INTERVAL_MS=0

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
login() {
  curl -sf -X POST "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | json "['access_token']"
}
admin=$(login $admin_email $admin_pass)
curl -sf -X POST "$base/api/v1/users" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"first_name":"Contract","last_name":"User","email":"user@contract.local","password":"user-pass-123","email_verified":true}' >/dev/null
user=$(login user@contract.local user-pass-123)
# A card each, so card routes have something real behind the ids the fuzzer tries.
for tok in "$user" "$admin"; do
  curl -sf -X POST "$base/api/v1/cards" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    -d '{"card_type":"debit","brand":"visa"}' >/dev/null
done

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection
status=0
start=$(date +%s)
for who in user admin; do
  token=$user; [ "$who" = admin ] && token=$admin
  echo "contract: schemathesis as $who (max $examples examples per operation, seed $seed)"
  # Logout and password change would end the session every later request uses.
  "$st" run "$base/api-docs/openapi.json" --url "$base" -H "Authorization: Bearer $token" \
    --checks "$checks" --max-examples "$examples" --seed "$seed" --generation-deterministic \
    --phases examples,coverage,fuzzing --workers "$workers" --no-color --request-timeout 20 \
    --exclude-path /api/v1/auth/logout --exclude-path /api/v1/auth/password/change \
    --report ndjson --report-ndjson-path "$work/$who.ndjson" --suppress-health-check all \
    >"$work/$who.out" 2>&1 && rc=0 || rc=$?
  if [ "$rc" -ne 0 ]; then cat "$work/$who.out"; status=$rc; fi
  grep -E "generated|^=+ .* in [0-9.]+s" "$work/$who.out" | sed "s/^/contract [$who]: /" || true
done
echo "contract: $(( $(date +%s) - start ))s"
if grep -Eq '"status_code": ?5[0-9][0-9]' "$work"/*.ndjson 2>/dev/null; then echo "contract: a 5xx answer was seen" >&2; status=1; fi
grep -E 'panicked|internal error' "$work/payd.log" | head -n 5 >&2 || true
exit "$status"
