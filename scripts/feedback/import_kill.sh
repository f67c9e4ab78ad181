#!/usr/bin/env bash
# Feedback import acceptance (issue 20): 1,000,000 generated legacy rows (some bad) imported
# into PostgreSQL with the release binary, SIGKILLed twice mid-way (after the checkpoint row
# shows progress), resumed to completion; then exactly the valid rows are stored, each bad row
# is reported once, reconcile against the same file finds no difference, and the rows/s of
# each run are printed.
#
#   scripts/feedback/import_kill.sh [--rows 1000000] [--batch-size 1000] [--debug]
#
# `--debug` uses the dev build (a quick check of the script; quoted figures use release);
# SIGNALBOX_BIN=PATH uses that binary without building.
# Needs PostgreSQL at $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) and
# psql; works in a schema of its own, dropped at the end.
set -euo pipefail

rows=1000000
batch=1000
profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --batch-size) batch="$2"; shift 2 ;;
        --debug) profile=debug; shift ;;
        *) echo "usage: $0 [--rows N] [--batch-size N] [--debug]" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if [ -n "${SIGNALBOX_BIN:-}" ]; then
    bin="$SIGNALBOX_BIN"   # a binary built already
elif [ "$profile" = release ]; then
    cargo build --release --locked -p signalbox >&2
    bin="${CARGO_TARGET_DIR:-$root/target}/release/signalbox"
else
    cargo build --locked -p signalbox >&2
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/signalbox"
fi

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
schema="import_kill_$$"
export SIGNALBOX_DATABASE_SCHEMA="$schema"
export SIGNALBOX_DATABASE_POOL_SIZE=3
unset SIGNALBOX_CONFIG
work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

sql() { psql "$DATABASE_URL" -qtAc "SET search_path TO $schema; $1" | tail -n 1; }

# Rows i = 1..N on lines i + 1; every 997th has a rating outside 0..10, every 1499th an
# unknown type, every 2003rd an unreadable time.
python3 - "$rows" "$work/legacy.csv" <<'PY'
import sys, time
n, path = int(sys.argv[1]), sys.argv[2]
base = int(time.time()) - 3600
kinds = ["Bug", "Idea", "Kudos", "review"]
words = ["works", "crashes", "is slow", "is great"]
with open(path, "w") as f:
    f.write("ticket,customer,category,score,comment,created,agent\n")
    for i in range(1, n + 1):
        kind, score, created = kinds[i % 4], str(i % 11), str(base - (i % 5_000_000) * 60)
        if i % 997 == 0: score = "99"
        elif i % 1499 == 0: kind = "Nonsense"
        elif i % 2003 == 0: created = "yesterday"
        f.write(f'L-{i},cust-{i % 5000},{kind},{score},"Row {i}: the app, it {words[i % 4]}",{created},agent{i % 7}\n')
bad = sum(1 for i in range(1, n + 1) if i % 997 == 0 or i % 1499 == 0 or i % 2003 == 0)
print(n - bad, file=open(path + ".valid", "w"))
PY
valid="$(cat "$work/legacy.csv.valid")"

cat > "$work/mapping.toml" <<'TOML'
format = "csv"
time_format = "epoch_s"
[columns]
id = "ticket"
user_id = "customer"
type = "category"
rating = "score"
text = "comment"
occurred_at = "created"
[metadata]
agent = "agent"
[values.type]
"Bug" = "bug_report"
"Idea" = "feature_request"
"Kudos" = "praise"
[rating]
min = 0
max = 10
[defaults]
channel = "email"
TOML

tenant="$("$bin" --data-dir "$work/data" tenants create legacy-import --tier enterprise \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["tenant_id"])')"
import_id="imp_$(sha256sum "$work/legacy.csv" | cut -c1-24)"
import() {
    "$bin" --data-dir "$work/data" feedback import "$work/legacy.csv" --tenant "$tenant" \
        --mapping "$work/mapping.toml" --batch-size "$batch" --report "$work/rejects.jsonl" "$@"
}
next_line() { sql "SELECT COALESCE(MAX(next_line), 0) FROM feedback_imports WHERE tenant_id = '$tenant' AND import_id = '$import_id'"; }

# Run, wait for the checkpoint to pass a line, SIGKILL.
for stop_at in $((rows / 4)) $((rows / 2)); do
    import > "$work/run.out" 2> "$work/run.err" &
    pid=$!
    while [ "$(next_line)" -le "$stop_at" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then echo "import ended before line $stop_at" >&2; cat "$work/run.err" >&2; exit 1; fi
        sleep 0.2
    done
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    echo "SIGKILLed at checkpoint line $(next_line)" >&2
done
import > "$work/final.out" 2> "$work/final.err"
grep -E 'rows/s' "$work/final.err" >&2

stored="$(sql "SELECT COUNT(*) FROM feedback_items WHERE tenant_id = '$tenant'")"
distinct_rejects="$(sql "SELECT COUNT(DISTINCT line) FROM feedback_import_rejects WHERE tenant_id = '$tenant'")"
report_lines="$(wc -l < "$work/rejects.jsonl")"
echo "stored $stored of $valid valid rows; $distinct_rejects rejected lines; report $report_lines lines" >&2
[ "$stored" = "$valid" ] || { echo "FAIL: stored $stored, expected $valid" >&2; exit 1; }
[ "$report_lines" = "$((rows - valid))" ] || { echo "FAIL: report has $report_lines lines" >&2; exit 1; }

start=$(date +%s.%N)
"$bin" --data-dir "$work/data" feedback reconcile "$work/legacy.csv" --tenant "$tenant" \
    --mapping "$work/mapping.toml" --out "$work/diff.jsonl" > "$work/reconcile.out"
end=$(date +%s.%N)
python3 - "$work/final.out" "$work/reconcile.out" "$start" "$end" "$rows" <<'PY'
import json, sys
final = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
rec = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
secs = float(sys.argv[4]) - float(sys.argv[3])
print(json.dumps({
    "rows": int(sys.argv[5]),
    "final_run": {k: final[k] for k in ("rows", "seconds", "rows_per_s", "stored", "duplicates", "rejected")},
    "reconcile": dict(rec, seconds=round(secs, 1), rows_per_s=round(int(sys.argv[5]) / secs)),
}))
PY
