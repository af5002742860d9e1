#!/usr/bin/env bash
# Browser test of the console: Playwright (Python) driving Debian's Chromium against a live payd, as
# tools/contract.sh starts it (free port, fresh database, own Redis prefix, development environment
# with the bootstrap admin). The events workers stay on: e-mail (verification codes) is delivered to
# the development mailbox by them.
#
# Usage: tools/browser.sh PAYD_BINARY PYTHON [--screenshots DIR]
# Env: PAYD_TEST_PG (server URL without database), CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
payd=$1 py=$2
shift 2

. "$(dirname "${BASH_SOURCE[0]}")/live-payd.sh"
live_payd browser "$payd"

status=0
PAYD_BASE=$base PAYD_ADMIN_EMAIL=$admin_email PAYD_ADMIN_PASSWORD=$admin_pass \
  "$py" tools/browser_test.py "$@" || status=$?
if [ "$status" -ne 0 ]; then echo "browser: payd log (last lines):" >&2; tail -n 20 "$work/payd.log" >&2; fi
grep -E 'panicked' "$work/payd.log" | head -n 5 >&2 || true
exit "$status"
