"""Oracle fixtures for the `lifetime` crate, computed with the Python `lifetimes` package.

Install the pinned requirements beside this script (`pip install -r requirements.txt`), then run
from the repository root:

    python crates/lifetime/oracle/lifetimes_parity.py

It writes, under crates/lifetime/tests/fixtures/:
  * <name>_transactions.csv    customer_id,date,amount (the input log)
  * <name>_summary.csv         lifetimes' summary_data_from_transaction_data
  * <name>_cal_holdout.csv     lifetimes' calibration_and_holdout_data
  * <name>_expected.json       settings, lifetimes' fitted BG/NBD and Gamma-Gamma parameters and
                               total log-likelihoods (in the summaries' units)
  * <name>_predictions.csv     per customer, at lifetimes' parameters: expected purchases at a
                               few horizons, P(alive), Gamma-Gamma expected average value, CLV
  * special.csv                scipy gammaln, digamma and hyp2f1 values
for two data sets: "synthetic" (a seeded BG/NBD + gamma-gamma simulation, daily periods) and
"cdnow" (the CDNOW sample bundled with lifetimes, weekly periods).
"""
import json
import os
import sys

import numpy as np
import pandas as pd
from scipy import special
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data
import lifetimes

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
HORIZONS = {"D": [7.0, 30.0, 90.0, 365.0], "W": [1.0, 4.0, 13.0, 52.0]}
MONTHS = 12
DISCOUNT = 0.01


def synthetic_log(seed=20261205, n=2000):
    """BG/NBD purchase process with gamma-gamma spend, daily dates."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = 0.6, 25.0, 1.3, 4.0  # lambda ~ Gamma(r, rate alpha) per day
    p_shape, q, v = 5.0, 4.0, 12.0
    start = pd.Timestamp("2020-01-01")
    end = pd.Timestamp("2021-06-30")
    rows = []
    for i in range(n):
        cid = f"c{i:05d}"
        birth = int(rng.integers(0, 182))
        lam = rng.gamma(r, 1.0 / alpha)
        p = rng.beta(a, b)
        nu = rng.gamma(q, 1.0 / v)
        horizon = (end - start).days
        t = float(birth)
        days = [birth]
        while True:
            t += rng.exponential(1.0 / lam)
            if t > horizon:
                break
            days.append(int(t))
            if rng.random() < p:
                break
        for d in days:
            amount = round(float(rng.gamma(p_shape, 1.0 / nu)), 2)
            rows.append((cid, (start + pd.Timedelta(days=d)).strftime("%Y-%m-%d"), amount))
        # Some customers buy twice on a day: the summary must merge those.
        if rng.random() < 0.05:
            rows.append((cid, (start + pd.Timedelta(days=days[-1])).strftime("%Y-%m-%d"), 1.5))
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"]), "2021-03-31", "2021-06-30", "D"


def cdnow_log():
    """CDNOW sample (2,357 customers, Fader and Hardie), weekly periods."""
    path = os.path.join(os.path.dirname(lifetimes.__file__), "datasets", "CDNOW_sample.txt")
    raw = pd.read_csv(path, sep=r"\s+", header=None, names=["customer_id", "sample_id", "date", "cds", "amount"],
                      dtype={"customer_id": str, "sample_id": str, "date": str})
    df = raw[["customer_id", "date", "amount"]].copy()
    return df, "19970930", "19980630", "W"


def fit_and_write(name, df, calibration_end, observation_end, freq):
    df.to_csv(os.path.join(OUT, f"{name}_transactions.csv"), index=False)
    tx = df.copy()
    tx["date"] = pd.to_datetime(tx["date"], format="%Y-%m-%d" if freq == "D" else "%Y%m%d")
    obs = pd.to_datetime(observation_end)
    cal = pd.to_datetime(calibration_end)
    summary = summary_data_from_transaction_data(tx, "customer_id", "date", monetary_value_col="amount",
                                                 observation_period_end=obs, freq=freq)
    summary = summary.sort_index()
    summary.to_csv(os.path.join(OUT, f"{name}_summary.csv"), index_label="customer_id", float_format="%.10g")
    ch = calibration_and_holdout_data(tx, "customer_id", "date", calibration_period_end=cal,
                                      observation_period_end=obs, freq=freq, monetary_value_col="amount")
    ch.sort_index().to_csv(os.path.join(OUT, f"{name}_cal_holdout.csv"), index_label="customer_id",
                           float_format="%.10g")

    x, tx_, T, m = (summary[c].to_numpy() for c in ["frequency", "recency", "T", "monetary_value"])
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(x, tx_, T)
    r, alpha, a, b = (float(bgf.params_[k]) for k in ["r", "alpha", "a", "b"])
    w = np.ones_like(tx_)
    ll_bg = -float(BetaGeoFitter._negative_log_likelihood(np.log([r, alpha, a, b]), x.astype(int), tx_, T, w, 0.0)) * len(x)

    keep = (x > 0) & (m > 0)
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(x[keep], m[keep])
    p, q, v = (float(ggf.params_[k]) for k in ["p", "q", "v"])
    ll_gg = -float(GammaGammaFitter._negative_log_likelihood(np.log([p, q, v]), x[keep], m[keep], np.ones(keep.sum()), 0.0)) * int(keep.sum())

    pred = pd.DataFrame(index=summary.index)
    for h in HORIZONS[freq]:
        pred[f"expected_{h:g}"] = bgf.conditional_expected_number_of_purchases_up_to_time(h, x, tx_, T)
    pred["p_alive"] = bgf.conditional_probability_alive(x, tx_, T)
    pred["expected_average_value"] = ggf.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"]).to_numpy()
    pred["clv"] = ggf.customer_lifetime_value(bgf, summary["frequency"], summary["recency"], summary["T"],
                                              summary["monetary_value"], time=MONTHS, discount_rate=DISCOUNT,
                                              freq=freq).to_numpy()
    pred.to_csv(os.path.join(OUT, f"{name}_predictions.csv"), index_label="customer_id", float_format="%.17g")
    expected = {
        "period": "day" if freq == "D" else "week",
        "calibration_end": calibration_end,
        "observation_end": observation_end,
        "customers": int(len(summary)),
        "horizons": HORIZONS[freq],
        "clv_months": MONTHS,
        "monthly_discount_rate": DISCOUNT,
        "bgnbd": {"r": r, "alpha": alpha, "a": a, "b": b, "log_likelihood": ll_bg},
        "gamma_gamma": {"p": p, "q": q, "v": v, "log_likelihood": ll_gg, "customers": int(keep.sum())},
    }
    with open(os.path.join(OUT, f"{name}_expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(name, json.dumps(expected["bgnbd"]), json.dumps(expected["gamma_gamma"]), file=sys.stderr)


def special_values():
    rows = []
    for x in [1e-3, 0.1, 0.5, 1.0, 1.5, 2.5, 7.3, 10.0, 55.5, 123.4, 1e4, 1e6]:
        rows.append(("gammaln", x, 0, 0, 0, special.gammaln(x)))
        rows.append(("digamma", x, 0, 0, 0, special.digamma(x)))
    params = [(0.25, 3.1, 2.9), (1.3, 5.7, 4.2), (5.24, 6.4, 11.0), (0.3, 0.4, 1.5), (20.5, 20.1, 40.0),
              (0.9, -0.2, 2.3), (1.55, 0.8, 3.7), (2.0, 3.0, 1.2)]
    for (a, b, c) in params:
        for z in [0.0, 0.01, 0.2, 0.5, 0.8, 0.95, 0.99]:
            rows.append(("hyp2f1", a, b, c, z, special.hyp2f1(a, b, c, z)))
    pd.DataFrame(rows, columns=["function", "a", "b", "c", "z", "value"]).to_csv(
        os.path.join(OUT, "special.csv"), index=False, float_format="%.17g")


def main():
    os.makedirs(OUT, exist_ok=True)
    special_values()
    fit_and_write("synthetic", *synthetic_log())
    fit_and_write("cdnow", *cdnow_log())


if __name__ == "__main__":
    main()
