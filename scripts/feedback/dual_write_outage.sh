#!/usr/bin/env bash
# Dual-write under a legacy outage (issue 20): the dual-write acceptance test with the legacy
# endpoint kept down for a real OUTAGE_S seconds (default 30, the issue's figure) while feedback
# keeps arriving (about one batch of 6 items a second), on PostgreSQL and SQLite. Prints, per
# backend, the items accepted during the outage, the 503s and failed job attempts on record,
# and how long after the endpoint came back every item had arrived (none lost, none twice).
#
# Usage: scripts/feedback/dual_write_outage.sh [OUTAGE_S]
# Needs the test PostgreSQL (DATABASE_URL as for `cargo test`, default 127.0.0.1:5432/test).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
outage="${1:-30}"
SIGNALBOX_DUAL_WRITE_OUTAGE_S="$outage" cargo test --manifest-path "$root/Cargo.toml" \
  -p signalbox --test dual_write -- --nocapture --test-threads 1 2>&1 | grep -oE "dual-write outage.*|^test result.*"
