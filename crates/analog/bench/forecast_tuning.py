#!/usr/bin/env python3
"""Chooses the forecaster's build options by skill on a training-period split.

Every configuration is built from the bundled data and verified with analogs, standardisation
and climatology from before 2013-09-01 and issue times in September-October 2013, so the
November-December holdout plays no part in the choice. Prints one line per configuration:
the mean CRPS skill against climatology and against persistence over all variables and
horizons (all stations pooled, both similarities averaged), and the 24 h t2m RMSE per metric.

Stage 1 is a coarse grid; stage 2 refines around its best corner (delta members, short
windows, larger hour weights); stage 3 pushes the hour weight further. Usage: forecast_tuning.py SIGNALBOX_BINARY DATA_CSV [1|2] [WORKDIR]
"""

import itertools
import json
import subprocess
import sys
import tempfile

WINDOWS = [1, 3, 6, 12]
HOUR_WEIGHTS = [0.0, 1.0, 2.0]
SEASON_WEIGHTS = [0.0, 1.0, 2.0]
MEMBERS = ["absolute", "delta"]


def run(binary, args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return out.stdout


def score(binary, data, workdir, window, hour, season, members, weights=None):
    model = f"{workdir}/w{window}-h{hour}-s{season}-{members}"
    args = ["forecast", "build", "--data", data, "--out", model, "--window", str(window),
            "--hour-weight", str(hour), "--season-weight", str(season), "--members", members]
    if weights:
        args += ["--weights", weights]
    run(binary, args)
    report = json.loads(run(binary, ["forecast", "verify", "--index", model, "--holdout-from",
                                     "2013-09-01", "--holdout-until", "2013-11-01", "--json"]))
    pooled = [r for r in report["rows"] if r["station"] == "ALL"]
    vs_clim = [r["skill"]["crps_vs_climatology"] for r in pooled]
    vs_pers = [r["skill"]["crps_vs_persistence"] for r in pooled]
    t2m24 = {r["similarity"]: r["ensemble"]["rmse"] for r in pooled
             if r["variable"] == "t2m" and r["horizon"] == "24h"}
    return (sum(vs_clim) / len(vs_clim), sum(vs_pers) / len(vs_pers), t2m24)


def main():
    binary, data = sys.argv[1], sys.argv[2]
    stage = sys.argv[3] if len(sys.argv) > 3 else "1"
    workdir = sys.argv[4] if len(sys.argv) > 4 else tempfile.mkdtemp()
    print("window hour season members weights | CRPSSvsClim CRPSSvsPers | t2m24 RMSE seed anen")
    if stage == "1":
        configs = [(w, h, s, m, None) for w, h, s, m in
                   itertools.product(WINDOWS, HOUR_WEIGHTS, SEASON_WEIGHTS, MEMBERS)]
        configs += [(3, 1.0, 1.0, "delta", "precip=0.5"),
                    (3, 1.0, 1.0, "delta", "precip=0.25,humidity=0.5"),
                    (6, 1.0, 1.0, "delta", "precip=0.5")]
    elif stage == "3":
        configs = [(w, h, s, "delta", None) for w, h, s in
                   itertools.product([1, 3, 6], [6.0, 10.0, 20.0], [1.0, 2.0])]
    else:
        configs = [(w, h, s, "delta", None) for w, h, s in
                   itertools.product([1, 2, 3], [2.0, 3.0, 4.0, 6.0], [0.5, 1.0])]
        configs += [(2, 3.0, 1.0, "delta", "precip=0.5"), (2, 3.0, 1.0, "delta", "msl=2"),
                    (2, 3.0, 1.0, "delta", "t2m=2")]
    for w, h, s, m, weights in configs:
        clim, pers, t2m = score(binary, data, workdir, w, h, s, m, weights)
        print(f"{w:>2} {h:.1f} {s:.1f} {m:<8} {weights or '-':<26} | {clim:+.4f} {pers:+.4f} | "
              f"{t2m.get('seed', float('nan')):.3f} {t2m.get('anen', float('nan')):.3f}", flush=True)


if __name__ == "__main__":
    main()
