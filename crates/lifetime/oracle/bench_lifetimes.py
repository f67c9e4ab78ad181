"""Times lifetimes' BG/NBD and Gamma-Gamma fits on a summaries CSV (half of
scripts/bench/lifetime_vs_lifetimes.sh). Prints one JSON line: median seconds of each fit,
the fitted parameters and the total log-likelihoods in the CSV's units.

    python crates/lifetime/oracle/bench_lifetimes.py SUMMARIES.csv REPEATS [SCORE_N]

With SCORE_N, also times scoring SCORE_N customers (the summaries repeated): conditional
expected purchases over 30 days, P(alive) and 12-month CLV at 1% monthly discount, daily periods.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter


def main(path, repeats, score_n):
    df = pd.read_csv(path)
    x, tx, T, m = (df[c].to_numpy(dtype=float) for c in ["frequency", "recency", "T", "monetary_value"])
    keep = (x > 0) & (m > 0)
    bg_times, gg_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        bgf = BetaGeoFitter(penalizer_coef=0.0).fit(x, tx, T)
        bg_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ggf = GammaGammaFitter(penalizer_coef=0.0).fit(x[keep], m[keep])
        gg_times.append(time.perf_counter() - start)
    bg = [float(bgf.params_[k]) for k in ["r", "alpha", "a", "b"]]
    gg = [float(ggf.params_[k]) for k in ["p", "q", "v"]]
    ll_bg = -float(BetaGeoFitter._negative_log_likelihood(np.log(bg), x.astype(int), tx, T, np.ones_like(tx), 0.0)) * len(x)
    ll_gg = -float(GammaGammaFitter._negative_log_likelihood(np.log(gg), x[keep], m[keep], np.ones(keep.sum()), 0.0)) * int(keep.sum())
    score_seconds = None
    checksum = None
    if score_n:
        reps = -(-score_n // len(x))
        sx, stx, sT, sm = (np.tile(v, reps)[:score_n] for v in (x, tx, T, m))
        frame = pd.DataFrame({"frequency": sx, "recency": stx, "T": sT, "monetary_value": sm})
        start = time.perf_counter()
        e = bgf.conditional_expected_number_of_purchases_up_to_time(30.0, sx, stx, sT)
        pa = bgf.conditional_probability_alive(sx, stx, sT)
        clv = ggf.customer_lifetime_value(bgf, frame["frequency"], frame["recency"], frame["T"],
                                          frame["monetary_value"], time=12, discount_rate=0.01, freq="D")
        score_seconds = time.perf_counter() - start
        checksum = float(np.sum(e) + np.sum(pa) + clv.sum())
    print(json.dumps({
        "score_customers": score_n,
        "score_seconds": score_seconds,
        "score_checksum": checksum,
        "customers": len(x),
        "bgnbd_seconds": float(np.median(bg_times)),
        "gamma_gamma_seconds": float(np.median(gg_times)),
        "bgnbd_log_likelihood": ll_bg,
        "gamma_gamma_log_likelihood": ll_gg,
        "bgnbd": bg,
        "gamma_gamma": gg,
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
