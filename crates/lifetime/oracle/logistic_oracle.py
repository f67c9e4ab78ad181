#!/usr/bin/env python3
"""scikit-learn oracle for lifetime::churn (the penalised logistic model and AUC).

Writes `../tests/fixtures/logistic_oracle.json` (deterministic, fixed seed). For each case:

    {"name": str, "l2_penalty": float, "feature_names": [str],
     "rows": [[float]], "labels": [bool],
     "expected": {"means": [float], "sds": [float], "coefficients": [float],
                  "intercept": float, "probabilities": [float],
                  "auc_of_probabilities": float, "tied_scores": [float],
                  "auc_of_tied_scores": float}}

The model: StandardScaler (population sd) then
LogisticRegression(C = 1 / l2_penalty) with the default L2 penalty, an unpenalised intercept and
the Newton-Cholesky solver at tol 1e-14, i.e. the minimiser of
    sum_i logloss_i + (l2_penalty / 2) * |coef|^2
on standardised features. The script checks that the gradient of that objective vanishes at
sklearn's answer, so the fixture does not depend on a solver's stopping rule. AUCs are
sklearn.metrics.roc_auc_score; `tied_scores` are the probabilities rounded to 1 decimal, so many
ties (each tie counts 1/2).

Run: python3 crates/lifetime/oracle/logistic_oracle.py   (requirements.txt beside this file)
"""

import json
import os

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "logistic_oracle.json")


def case(name, x, y, l2_penalty, names):
    scaler = StandardScaler()
    z = scaler.fit_transform(x)
    model = LogisticRegression(
        C=1.0 / l2_penalty, solver="newton-cholesky", tol=1e-14, max_iter=1000
    )
    model.fit(z, y)
    coef = model.coef_[0]
    intercept = float(model.intercept_[0])
    prob = model.predict_proba(z)[:, 1]
    # The objective's gradient at the answer is zero (checks the scaling of C too).
    r = prob - y
    grad = np.concatenate([[r.sum()], z.T @ r + l2_penalty * coef])
    assert np.max(np.abs(grad)) < 1e-8, grad
    sds = scaler.scale_  # population sd, 1.0 for a constant column
    tied = np.round(prob, 1)
    return {
        "name": name,
        "l2_penalty": l2_penalty,
        "feature_names": names,
        "rows": x.tolist(),
        "labels": [bool(v) for v in y],
        "expected": {
            "means": scaler.mean_.tolist(),
            "sds": sds.tolist(),
            "coefficients": coef.tolist(),
            "intercept": intercept,
            "probabilities": prob.tolist(),
            "auc_of_probabilities": float(roc_auc_score(y, prob)),
            "tied_scores": tied.tolist(),
            "auc_of_tied_scores": float(roc_auc_score(y, tied)),
        },
    }


def main():
    rng = np.random.default_rng(20261205)
    cases = []

    # 400 customers, 6 features of different scales, one of them binary, one constant.
    n = 400
    x = np.column_stack(
        [
            rng.normal(0.0, 1.0, n),
            rng.exponential(30.0, n),
            rng.uniform(0.0, 1.0, n),
            (rng.uniform(size=n) < 0.3).astype(float),
            rng.normal(5.0, 0.1, n),
            np.full(n, 2.0),
        ]
    )
    eta = -0.5 + 1.2 * x[:, 0] + 0.02 * x[:, 1] - 1.0 * x[:, 2] + 0.8 * x[:, 3]
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    names = ["a", "b", "c", "d", "e", "constant"]
    cases.append(case("mixed", x, y, 1.0, names))
    cases.append(case("mixed_strong_penalty", x, y, 25.0, names))

    # Perfectly separable: the penalty is what keeps the estimate finite.
    n = 120
    x = np.column_stack([rng.uniform(-3, 3, n), rng.normal(0, 1, n)])
    y = (x[:, 0] > 0.2).astype(float)
    cases.append(case("separable", x, y, 0.5, ["x", "noise"]))

    with open(OUT, "w") as f:
        json.dump({"cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
