#!/usr/bin/env bash
# Model speed against Python `lifetimes` (issue 19, acceptance 3), in one run on the same
# 100,000 simulated customer summaries: median seconds of the BG/NBD and Gamma-Gamma fits for
# both, their log-likelihoods (equal at the optimum), the ratio, and both times to score
# 1,000,000 customers (the summaries repeated; expected purchases over 30 days, P(alive),
# 12-month CLV) with a checksum of the scores.
#
#   scripts/bench/lifetime_vs_lifetimes.sh [--customers 100000] [--repeats 5] [--score 1000000]
#
# Needs a Python with the oracle's pinned requirements:
#   python3 -m venv .venv && .venv/bin/pip install -r crates/lifetime/oracle/requirements.txt
#   PYTHON=.venv/bin/python scripts/bench/lifetime_vs_lifetimes.sh
# Both sides run on one core (`taskset -c 0` when available): figures are per core.
set -euo pipefail

customers=100000
repeats=5
score=1000000
while [ $# -gt 0 ]; do
    case "$1" in
        --customers) customers="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --score) score="$2"; shift 2 ;;
        *) echo "usage: $0 [--customers N] [--repeats N] [--score N]" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi

cargo build --release --locked -p lifetime --example lifetime_bench >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/lifetime_bench"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" write "$customers" 1 "$work/summaries.csv"

echo "fitting $customers customers, $repeats repeats each (lifetimes first)..." >&2
theirs="$("${pin[@]}" "$python" crates/lifetime/oracle/bench_lifetimes.py "$work/summaries.csv" "$repeats" "$score")"
ours="$("${pin[@]}" "$bin" fit "$work/summaries.csv" "$repeats")"
scoring="$("${pin[@]}" "$bin" score "$work/summaries.csv" "$score" 3)"

"$python" - "$theirs" "$ours" "$scoring" <<'PY'
import json, sys
theirs, ours, scoring = (json.loads(a) for a in sys.argv[1:4])
print(f"customers: {ours['customers']}")
print("| model | lifetimes (s) | signalbox (s) | ratio | log-likelihood lifetimes | log-likelihood signalbox |")
print("|---|---|---|---|---|---|")
for name, key in (("BG/NBD", "bgnbd"), ("Gamma-Gamma", "gamma_gamma")):
    t, o = theirs[f"{key}_seconds"], ours[f"{key}_seconds"]
    print(f"| {name} | {t:.4f} | {o:.4f} | {t / o:.1f}x | {theirs[f'{key}_log_likelihood']:.6f} | {ours[f'{key}_log_likelihood']:.6f} |")
t = theirs["bgnbd_seconds"] + theirs["gamma_gamma_seconds"]
o = ours["bgnbd_seconds"] + ours["gamma_gamma_seconds"]
print(f"| both | {t:.4f} | {o:.4f} | {t / o:.1f}x | | |")
ts, os_ = theirs["score_seconds"], scoring["score_seconds"]
print(f"scoring {scoring['customers']} customers (expected purchases 30 d + P(alive) + 12-month CLV): "
      f"lifetimes {ts:.3f} s (one run), signalbox {os_:.3f} s (median of 3), ratio {ts / os_:.1f}x; "
      f"checksums {theirs['score_checksum']:.6f} / {scoring['checksum']:.6f}")
PY
