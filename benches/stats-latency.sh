#!/usr/bin/env bash
# Statistics query latency (docs/benchmarks.md, "Statistics"): every statistics route, N sequential
# requests each against a running payd, p50 / p95 / max from curl's time_total.
#
#   payd seed --users 50 --months 24 --operations 1000000 --cards-per-user 4 --merchants 10
#   payd serve &   benches/stats-latency.sh            # BASE, N, EMAIL, PASSWORD, DB overridable
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080}
N=${N:-200}
EMAIL=${EMAIL:-admin@payd.local}
PASSWORD=${PASSWORD:-demo-password-1}
DB=${DB:-postgres://postgres@127.0.0.1:5432/payd}
TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
CARD=$(psql "$DB" -XAtc "SELECT scope_id FROM stats_daily WHERE scope = 'card' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
MERCHANT=$(psql "$DB" -XAtc "SELECT scope_id FROM stats_daily WHERE scope = 'merchant' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
KEY=$(psql "$DB" -XAtc "SELECT scope_id FROM stats_daily WHERE scope = 'api_key' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
YEAR=$(date +%Y)
echo "operations: $(psql "$DB" -XAtc 'SELECT count(*) FROM operations'), rollup rows: $(psql "$DB" -XAtc 'SELECT count(*) FROM stats_daily')"
for path in \
  "/api/v1/stats/topup?period=month&year=$YEAR" \
  "/api/v1/stats/payment?metric=method&period=year&year=$YEAR" \
  "/api/v1/stats/withdrawal?metric=status&year=$YEAR" \
  "/api/v1/stats/transfer?card_id=$CARD&year=$YEAR" \
  "/api/v1/stats/payment?merchant_id=$MERCHANT&metric=status&year=$YEAR" \
  "/api/v1/stats/payment?api_key_id=$KEY&period=year&year=$YEAR" \
  "/api/v1/stats/balance?period=month&year=$YEAR" \
  "/api/v1/stats/balance?card_id=$CARD&period=year&year=$YEAR" \
  "/api/v1/stats/dashboard" \
  "/api/v1/cards/$CARD/dashboard" \
  "/api/v1/merchants/$MERCHANT/dashboard"; do
  for _ in $(seq 1 "$N"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "authorization: Bearer $TOKEN" "$BASE$path"
  done | python3 -c '
import sys
rows = [l.split() for l in sys.stdin]
bad = [r for r in rows if r[0] != "200"]
t = sorted(float(r[1]) * 1000 for r in rows)
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print(f"p50 {q(0.5):6.1f} ms  p95 {q(0.95):6.1f} ms  max {t[-1]:6.1f} ms  non-200 {len(bad)}  " + sys.argv[1])' "$path"
done
