#!/usr/bin/env python3
"""numpy peer of `examples/throughput.rs`: the same batch formulas, vectorised
over a (USERS, LEN) array of time-ordered sentiments on the 1e-4 grid, one core.
Prints ratios per second (median of RUNS) in the same units as the Rust example.

    python3 crates/weber/oracle/numpy_throughput.py [USERS] [LEN] [RUNS]

Two numpy shapes, both timed:
- "2-D": chunks of 10k users at once (numpy's best case: one call per chunk, temporaries stay
  small);
- "per user": one vectorised call per user's (n,) array, as a service computing one profile at a
  time does (the seed's ProductionWeberEngine shape).
Profiles computed: constant (mean of ratios <= p99), confidence, bias ratio.
"""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

EPS = 0.1
CHUNK = 10_000


def profiles(s):
    """s: (U, n) float64 sentiments on the grid, n >= 3. Returns (const, conf, bias)."""
    u, n = s.shape
    q = np.rint(s * 10000.0).astype(np.int64)
    sq = q / 10000.0
    csum = np.cumsum(q, axis=1)
    base = np.empty_like(sq)
    base[:, 0] = sq[:, 0]
    base[:, 1:] = csum[:, :-1] / (np.arange(1, n, dtype=np.float64) * 10000.0)
    ratios = np.abs(sq - base) / (np.abs(base) + EPS)
    p99 = np.percentile(ratios, 99, axis=1)
    kept = ratios <= p99[:, None]
    cnt = kept.sum(axis=1)
    const = np.where(kept, ratios, 0.0).sum(axis=1) / cnt
    dev = np.where(kept, ratios - const[:, None], 0.0)
    std = np.sqrt((dev * dev).sum(axis=1) / cnt)
    conf = np.maximum(0.0, 1.0 - std / (const + EPS))
    neg = sq < base
    pos = sq > base
    nneg, npos = neg.sum(axis=1), pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = (np.where(neg, ratios, 0.0).sum(axis=1) / nneg) / (np.where(pos, ratios, 0.0).sum(axis=1) / npos)
    bias = np.where((nneg > 0) & (npos > 0), bias, np.nan)
    return const, conf, bias


def main():
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    rng = np.random.default_rng(42)
    s = (rng.integers(0, 20001, size=(users, n)) - 10000) / 10000.0
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        acc = 0.0
        for start in range(0, users, CHUNK):
            const, _, _ = profiles(s[start:start + CHUNK])
            acc += const.sum()
        dt = time.perf_counter() - t
        rates.append(users * n / dt)
    rates.sort()
    print(f"shape: {users} users x {n} interactions, {runs} runs, numpy {np.__version__}, 1 thread")
    print(f"numpy batch (vectorised, pre-ordered float64): {rates[len(rates) // 2] / 1e6:.1f} M ratios/s (median)")
    # Per user: a tenth of the users is plenty for a stable rate.
    per_user = max(1, users // 10)
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        acc = 0.0
        for i in range(per_user):
            const, _, _ = profiles(s[i:i + 1])
            acc += const.sum()
        dt = time.perf_counter() - t
        rates.append(per_user * n / dt)
    rates.sort()
    print(f"numpy per user (one vectorised call per profile): {rates[len(rates) // 2] / 1e6:.2f} M ratios/s (median)")


if __name__ == "__main__":
    main()
