#!/usr/bin/env python3
"""Draws the aggregate weekly cumulative tracking plot of a holdout evaluation.

Input: the JSON `signalbox weber predict --report-out FILE` writes (its `weekly_tracking` list of
{week_start_day, actual_cumulative, predicted_cumulative}, days counted from 1970-01-01).
Output: a PNG comparing actual and predicted cumulative holdout purchases week by week, with
the calibration end marked when the report has it.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/predictions/requirements.txt
    .venv/bin/python scripts/predictions/tracking_plot.py report.json docs/predictions/tracking.png
"""

import argparse
import datetime as dt
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

EPOCH = dt.date(1970, 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="JSON from `signalbox weber predict --report-out`")
    parser.add_argument("png", help="where to write the plot")
    parser.add_argument("--title", default="Cumulative purchases after the calibration end: actual vs predicted")
    args = parser.parse_args()

    with open(args.report, encoding="utf-8") as f:
        report = json.load(f)
    points = report.get("weekly_tracking") or []
    if not points:
        print(f"{args.report}: weekly_tracking is empty (no holdout?)", file=sys.stderr)
        return 1
    weeks = [EPOCH + dt.timedelta(days=p["week_start_day"]) for p in points]
    actual = [p["actual_cumulative"] for p in points]
    predicted = [p["predicted_cumulative"] for p in points]

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    ax.plot(weeks, actual, color="#1f4e79", linewidth=2, label="actual")
    ax.plot(weeks, predicted, color="#c55a11", linewidth=2, linestyle="--", label="BG/NBD prediction")
    calibration_end = report.get("calibration_end")
    if calibration_end:
        ax.axvline(dt.date.fromisoformat(calibration_end), color="grey", linestyle=":",
                   label="end of calibration")
    ax.set_title(args.title)
    ax.set_xlabel("week")
    ax.set_ylabel("cumulative purchases (purchase periods)")
    summary = []
    if report.get("mae_purchases") is not None:
        summary.append(f"holdout MAE per customer {report['mae_purchases']:.3f}")
    if report.get("customers") is not None:
        summary.append(f"{report['customers']} customers")
    if summary:
        ax.text(0.01, 0.98, ", ".join(summary), transform=ax.transAxes, va="top", fontsize=9)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(args.png, metadata={"Software": None})  # no version stamp: same input, same file
    return 0


if __name__ == "__main__":
    sys.exit(main())
