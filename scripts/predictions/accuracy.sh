#!/usr/bin/env bash
# Reproduces every accuracy figure of docs/predictions.md ("Measured accuracy"):
#   1. CDNOW (the 2,357-customer sample committed as a parity fixture), weekly periods,
#      calibration end 1997-09-30: holdout MAE of purchases per customer, totals, and the weekly
#      cumulative tracking plot (docs/predictions/tracking.png);
#   2. churn AUC, timing-only vs Weber-enhanced, on a simulated tenant with reviews (and on the
#      same tenant simulated without the Weber effect, as a control).
#
# Usage: scripts/predictions/accuracy.sh [WORKDIR]
# The plot needs matplotlib: python3 -m venv .venv && .venv/bin/pip install -r
# scripts/predictions/requirements.txt, then PYTHON=.venv/bin/python scripts/predictions/accuracy.sh
# (without it the figures are still printed and the plot is skipped).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
python="${PYTHON:-python3}"

# SIGNALBOX=path/to/signalbox uses an existing build (the figures do not depend on the profile).
if [ -n "${SIGNALBOX:-}" ]; then
  bin="$SIGNALBOX"
else
  cargo build --release --locked -p signalbox --manifest-path "$root/Cargo.toml" >&2
  bin="$root/target/release/signalbox"
fi
sb() { "$bin" --data-dir "$work/data" "$@"; }

# Prints the named fields of a JSON file, one "name: value" per line.
fields() {
  "$python" -c 'import json, sys
doc = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = doc.get(k)
    print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")' "$@"
}

echo "== CDNOW sample, weekly, calibration end 1997-09-30, holdout to 1998-06-30"
sb weber predict --transactions "$root/crates/lifetime/tests/fixtures/cdnow_transactions.csv" \
  --calibration-end 1997-09-30 --observation-end 1998-06-30 --period week \
  --out "$work/cdnow.jsonl" --params-out "$work/cdnow_params.json" --report-out "$work/cdnow_report.json"
fields "$work/cdnow_report.json" customers mae_purchases actual_total predicted_total auc_timing
"$python" -c 'import json, sys
p = json.load(open(sys.argv[1]))
print("  bgnbd:", {k: round(v, 4) for k, v in p["bgnbd"].items()}, "log_likelihood:", round(p["log_likelihood"], 3))
print("  gamma_gamma:", {k: round(v, 4) for k, v in p["gamma_gamma"].items()})' "$work/cdnow_params.json"
if "$python" -c 'import matplotlib' 2>/dev/null; then
  mkdir -p "$root/docs/predictions"
  "$python" "$root/scripts/predictions/tracking_plot.py" "$work/cdnow_report.json" \
    "$root/docs/predictions/tracking.png" --title "CDNOW sample: cumulative purchases after the calibration end, by week"
  echo "  plot: docs/predictions/tracking.png"
else
  echo "  (matplotlib not found for $python: plot skipped; see the usage above)"
fi

# A simulated tenant: 5,000 customers over 540 days (acquired over the first half), 85% of them
# writing reviews, calibration up to day 450 (a 90-day holdout); sensitive
# customers drop out sooner (--dropout-effect), so Weber profiles carry churn signal.
for effect in 0 2 6; do
  echo "== simulated tenant, seed 7, 5000 customers, 2024-01-01 + 540 days, dropout effect $effect, calibration end 2025-03-26"
  sb weber gen --customers 5000 --seed 7 --start 2024-01-01 --days 540 --dropout-effect "$effect" \
    --purchases "$work/sim$effect.csv" "$work/sim$effect-reviews.jsonl"
  sb weber batch "$work/sim$effect-reviews.jsonl" --out "$work/sim$effect-profiles.jsonl"
  sb weber predict --transactions "$work/sim$effect.csv" --calibration-end 2025-03-26 \
    --weber-profiles "$work/sim$effect-profiles.jsonl" \
    --out "$work/sim$effect.jsonl" --report-out "$work/sim$effect-report.json"
  fields "$work/sim$effect-report.json" customers mae_purchases auc_timing auc_weber
done
echo "(outputs in $work)"
