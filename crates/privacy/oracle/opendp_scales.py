"""Noise scales and 95% accuracies as OpenDP chooses them, for the parity test.

For a grid of (sensitivity, epsilon[, delta]) this asks OpenDP (the version pinned in
requirements.txt) for the smallest noise scale that meets the budget, by
`binary_search_param` over its own mechanisms on integer inputs:

- discrete Laplace: `make_laplace` on `atom_domain(T=int)` / `absolute_distance(T=int)`,
  pure epsilon-DP;
- discrete Gaussian: `make_gaussian` on the same space, rho-zCDP cast to approximate DP
  (`make_zCDP_to_approxDP`) with delta fixed (`make_fix_delta`);

and records the accuracy at alpha = 0.05 (`discrete_laplacian_scale_to_accuracy`,
`discrete_gaussian_scale_to_accuracy`). The output is the committed fixture
`tests/fixtures/opendp_scales.json` that `tests/opendp_parity.rs` reads.

Usage (from crates/privacy):
    python3 -m venv ../../target/opendp-venv
    ../../target/opendp-venv/bin/pip install -r oracle/requirements.txt
    ../../target/opendp-venv/bin/python oracle/opendp_scales.py > tests/fixtures/opendp_scales.json
"""

import json
import sys
from importlib.metadata import version

import opendp.prelude as dp
from opendp.accuracy import (
    discrete_gaussian_scale_to_accuracy,
    discrete_laplacian_scale_to_accuracy,
)

ALPHA = 0.05
SENSITIVITIES = [1, 2, 5, 10, 100]
EPSILONS = [0.01, 0.1, 0.5, 1.0, 2.0, 10.0]
DELTAS = [1e-5, 1e-6, 1e-9]


def main() -> None:
    dp.enable_features("contrib")
    space = dp.atom_domain(T=int), dp.absolute_distance(T=int)

    laplace = []
    for sensitivity in SENSITIVITIES:
        for epsilon in EPSILONS:
            scale = dp.binary_search_param(
                lambda s: dp.m.make_laplace(*space, scale=s),
                d_in=sensitivity,
                d_out=epsilon,
            )
            laplace.append(
                {
                    "sensitivity": sensitivity,
                    "epsilon": epsilon,
                    "scale": scale,
                    "accuracy_95": discrete_laplacian_scale_to_accuracy(scale, ALPHA),
                }
            )

    gaussian = []
    for sensitivity in SENSITIVITIES:
        for epsilon in EPSILONS:
            for delta in DELTAS:

                def make(s, delta=delta):
                    zcdp = dp.m.make_gaussian(*space, scale=s)
                    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(zcdp), delta)

                scale = dp.binary_search_param(
                    make, d_in=sensitivity, d_out=(epsilon, delta)
                )
                gaussian.append(
                    {
                        "sensitivity": sensitivity,
                        "epsilon": epsilon,
                        "delta": delta,
                        "scale": scale,
                        "accuracy_95": discrete_gaussian_scale_to_accuracy(scale, ALPHA),
                    }
                )

    fixture = {
        "generator": "crates/privacy/oracle/opendp_scales.py",
        "opendp_version": version("opendp"),
        "alpha": ALPHA,
        "laplace": laplace,
        "gaussian": gaussian,
    }
    json.dump(fixture, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
