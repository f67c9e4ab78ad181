#!/usr/bin/env bash
# Feedback tiers under load (issue 17, acceptance 5), on SQLite with the release binary:
# realtime request latency at RATE items/s with full policy checks (research mode), and the
# queued tiers' time from accept to processed under the same load, against the seed's budgets
# (priority 1 s, standard 10 s, batch 60 s).
#
#   scripts/bench/feedback_tiers.sh [--rate 2000] [--batch 10] [--queued-rate 50]
#                                   [--duration 30s] [--connections 20]
#
# Starts `signalbox serve` on a fresh data directory, creates a tenant and a key
# (read,write,admin), runs `signalbox loadtest --scenario feedback-ingest` and prints its JSON
# report (realtime_request_ms: p50/p90/p99 per request of --batch items;
# accept_to_processed_ms: per queued tier).
set -euo pipefail

rate=2000
batch=10
queued_rate=50
duration=30s
connections=20
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --queued-rate) queued_rate="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        *) echo "usage: $0 [--rate N] [--batch N] [--queued-rate N] [--duration D] [--connections N]" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release --locked -p signalbox >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/signalbox"

data="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$data"
}
trap cleanup EXIT

unset DATABASE_URL SIGNALBOX_CONFIG SIGNALBOX_DATABASE_SCHEMA
tenant="$("$bin" --data-dir "$data" tenants create feedback-bench --tier enterprise \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["tenant_id"])')"
key="$("$bin" --data-dir "$data" keys create --tenant "$tenant" --scopes read,write,admin \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["api_key"])')"

# No per-tenant rate limit in the way of the measured load.
SIGNALBOX_LOG=info "$bin" --data-dir "$data" serve --listen 127.0.0.1:0 --rate-limits off \
    > "$data/serve.out" 2> "$data/serve.log" &
server_pid=$!
addr=""
for _ in $(seq 600); do
    addr="$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$data/serve.log" | head -n 1)"
    [ -n "$addr" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$data/serve.log" >&2; exit 1; fi
    sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start" >&2; cat "$data/serve.log" >&2; exit 1; }

"$bin" loadtest --scenario feedback-ingest --url "http://$addr" \
    -H "Authorization: Bearer $key" --connections "$connections" --duration "$duration" \
    --rate "$rate" --batch "$batch" --queued-rate "$queued_rate"
