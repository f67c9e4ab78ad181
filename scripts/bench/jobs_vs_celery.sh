#!/usr/bin/env bash
# No-op jobs per second through enqueue -> claim -> complete, signalbox's job queues against the
# seed's own stack (Celery 5 on Redis), on this machine in the same run.
#
#   scripts/bench/jobs_vs_celery.sh [--jobs N] [--runs R]
#
# Each system runs R times (default 3) with N jobs (default 20000); the table shows the median
# of each figure and the ratio of signalbox's throughput to Celery's (seed settings: prefetch 1).
# signalbox: `signalbox jobs bench --backend sqlite|postgres --jobs N`, one JSON line per run
# with at least `jobs_per_second`, `enqueue_p50_ms` and `enqueue_p99_ms`; PostgreSQL at
# SIGNALBOX_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
# Celery: scripts/bench/celery_noop.py (Redis at 127.0.0.1:6379, databases 14 and 15), with
# prefetch 1 (the seed's setting) and 4.
set -euo pipefail

jobs=20000
runs=3
while [ $# -gt 0 ]; do
    case "$1" in
        --jobs) jobs="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        *) echo "usage: $0 [--jobs N] [--runs R]" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
pg_url="${SIGNALBOX_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo build --release --locked -p signalbox >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/signalbox"

for i in $(seq "$runs"); do
    echo "run $i/$runs: signalbox sqlite" >&2
    data="$(mktemp -d)"
    "$bin" --data-dir "$data" jobs bench --backend sqlite --jobs "$jobs" | tail -n 1 >> "$out/sqlite.jsonl"
    rm -rf "$data"
    echo "run $i/$runs: signalbox postgres" >&2
    data="$(mktemp -d)"
    DATABASE_URL="$pg_url" "$bin" --data-dir "$data" jobs bench --backend postgres --jobs "$jobs" \
        | tail -n 1 >> "$out/postgres.jsonl"
    rm -rf "$data"
    for prefetch in 1 4; do
        echo "run $i/$runs: celery prefetch $prefetch" >&2
        python3 scripts/bench/celery_noop.py --jobs "$jobs" --prefetch "$prefetch" \
            | tail -n 1 >> "$out/celery-prefetch$prefetch.jsonl"
    done
done

python3 - "$out" "$jobs" <<'PY'
import json, os, statistics, sys

out, jobs = sys.argv[1], sys.argv[2]
rows = [("signalbox sqlite", "sqlite"), ("signalbox postgres", "postgres"),
        ("celery prefetch 1", "celery-prefetch1"), ("celery prefetch 4", "celery-prefetch4")]

def median(name, key):
    with open(os.path.join(out, name + ".jsonl")) as f:
        values = [json.loads(line)[key] for line in f if line.strip()]
    return statistics.median(values), len(values)

baseline, _ = median("celery-prefetch1", "jobs_per_second")
print(f"no-op jobs, N = {jobs}, medians")
print(f"{'system':<20} {'runs':>4} {'jobs/s':>10} {'enqueue p50 ms':>15} {'enqueue p99 ms':>15} {'x celery':>9}")
for label, name in rows:
    rate, n = median(name, "jobs_per_second")
    p50, _ = median(name, "enqueue_p50_ms")
    p99, _ = median(name, "enqueue_p99_ms")
    print(f"{label:<20} {n:>4} {rate:>10.0f} {p50:>15.3f} {p99:>15.3f} {rate / baseline:>9.2f}")
PY
