#!/usr/bin/env bash
# Web console speed (issue 18, acceptance 4), on SQLite with the release binary and the demo
# tenant's data: each page's server time (median and p99 over --requests requests on one
# keep-alive connection, measured by the client over loopback, so an upper bound) and the
# bytes of HTML, script and style it loads, plain and as served compressed.
#
#   scripts/bench/console_pages.sh [--requests 500] [--connections 1] [--json]
#
# Starts `signalbox serve` on a fresh data directory (which creates the demo tenant and its
# history), waits for the job workers to finish the demo's queued work, then runs
# `signalbox loadtest --scenario console`: it signs in with the demo key, follows the
# console's links from the overview (at most two pages of a kind, forty in all) and loads
# each page it finds. Prints a Markdown table (or the JSON report with --json).
set -euo pipefail

requests=500
connections=1
json=0
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) requests="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --json) json=1; shift ;;
        *) echo "usage: $0 [--requests N] [--connections N] [--json]" >&2; exit 2 ;;
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
# No rate limit in the way of the measured requests.
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
grep -o 'wrote the demo tenant.s history.*' "$data/serve.log" >&2 || true

# The demo's queued feedback and jobs are done within a second or two of the start; measure
# the pages as a visitor would find them afterwards.
key="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$data/demo-tenant.json")"
for _ in $(seq 100); do
    pending="$(curl -sf "http://$addr/api/v1/jobs/stats" -H "Authorization: Bearer $key" \
        | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(q["by_status"]["pending"]+q["by_status"]["running"]+q["by_status"]["retrying"] for q in s["queues"]))')"
    [ "$pending" = "0" ] && break
    sleep 0.2
done

"$bin" --data-dir "$data" loadtest --scenario console --url "http://$addr" \
    --connections "$connections" --requests "$requests" > "$data/report.json"

if [ "$json" = 1 ]; then
    cat "$data/report.json"
    exit 0
fi
python3 - "$data/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print("| page | median ms | p99 ms | HTML bytes (compressed) | script bytes (compressed) | style bytes (compressed) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for p in report["pages"]:
    bad = {k: v for k, v in p["status_counts"].items() if k != "200"}
    note = f" (non-200: {bad})" if bad else ""
    print(f"| `{p['path']}`{note} | {p['median_ms']:.2f} | {p['p99_ms']:.2f} "
          f"| {p['html_bytes']:,} ({p['html_bytes_compressed']:,}) "
          f"| {p['script_bytes']:,} ({p['script_bytes_compressed']:,}) "
          f"| {p['style_bytes']:,} ({p['style_bytes_compressed']:,}) |")
print()
print(f"All the console's script: {report['script_bytes_total']:,} bytes; style: "
      f"{report['style_bytes_total']:,} bytes (uncompressed).")
PY
