#!/usr/bin/env python3
"""numpy reference implementation of the weber crate's formulas.

Independent of the Rust code: it uses numpy cumsum / abs / percentile / std
in float64 and writes `fixture.jsonl` next to this file, one JSON object per
history:

    {"name": str, "window": int, "eps": float,
     "interactions": [[sentiment, time_ms, tiebreak], ...],   # arrival order
     "expected": {"weber_constant": float, "calculation_confidence": float,
                  "sensitivity_segment": str, "bias_ratio": float | null,
                  "window_len": int}}

Formulas (see the crate docs):
  order by (time, tiebreak) with a stable sort, drop repeated keys keeping
  the first, keep the last W; sentiments on the 1e-4 grid (q = s * 10000);
  baseline_0 = s_0, baseline_i = mean(s_0..s_{i-1}) computed as the exact
  integer cumsum of q divided by i * 10000;
  ratio_i = |s_i - baseline_i| / (|baseline_i| + eps)   (ratio_0 = 0 included);
  p = np.percentile(ratios, 99) (default "linear"); kept = ratios <= p;
  constant = kept.mean(); confidence = max(0, 1 - kept.std() / (constant + eps));
  both 0 when fewer than 3 ratios;
  segment: >= 0.8 Highly_Sensitive, >= 0.4 Moderately_Sensitive,
           >= 0.2 Low_Sensitive, else Insensitive;
  bias = mean(ratio[s < baseline]) / mean(ratio[s > baseline]) or None.

Run: python3 crates/weber/oracle/weber_oracle.py   (deterministic, fixed seed)
"""

import json
import os

import numpy as np

SEED = 20240601
SCALE = 10000


def normalize(interactions, window):
    """Stable sort by (time, tiebreak), keep the first of repeated keys, last W."""
    order = sorted(range(len(interactions)), key=lambda i: (interactions[i][1], interactions[i][2]))
    out = []
    prev = None
    for i in order:
        s, t, tb = interactions[i]
        if (t, tb) == prev:
            continue
        prev = (t, tb)
        out.append(s)
    return out[max(0, len(out) - window):]


def segment(c):
    if c >= 0.8:
        return "Highly_Sensitive"
    if c >= 0.4:
        return "Moderately_Sensitive"
    if c >= 0.2:
        return "Low_Sensitive"
    return "Insensitive"


def profile(sentiments, eps):
    s = np.asarray(sentiments, dtype=np.float64)
    n = s.shape[0]
    q = np.rint(s * SCALE).astype(np.int64)
    sq = q / float(SCALE)
    if n == 0:
        return dict(weber_constant=0.0, calculation_confidence=0.0,
                    sensitivity_segment=segment(0.0), bias_ratio=None, window_len=0)
    csum = np.cumsum(q)
    base = np.empty(n, dtype=np.float64)
    base[0] = sq[0]
    base[1:] = csum[:-1] / (np.arange(1, n, dtype=np.float64) * float(SCALE))
    ratios = np.abs(sq - base) / (np.abs(base) + eps)

    neg = sq < base
    pos = sq > base
    bias = None
    if neg.any() and pos.any():
        bias = float(ratios[neg].mean() / ratios[pos].mean())

    if n < 3:
        c, conf = 0.0, 0.0
    else:
        p = np.percentile(ratios, 99)
        kept = ratios[ratios <= p]
        c = float(kept.mean())
        conf = float(max(0.0, 1.0 - kept.std() / (c + eps)))
    return dict(weber_constant=c, calculation_confidence=conf,
                sensitivity_segment=segment(c), bias_ratio=bias, window_len=int(n))


def grid(x):
    """Snap to the 1e-4 grid and return plain Python floats k / 10000."""
    k = np.clip(np.rint(np.asarray(x, dtype=np.float64) * SCALE), -SCALE, SCALE).astype(np.int64)
    return [int(v) / SCALE for v in k]


def sentiments(rng, kind, n):
    if kind == "uniform":
        return grid(rng.uniform(-1, 1, n))
    if kind == "vader":  # clustered compound-like scores
        centre = rng.uniform(-0.6, 0.8)
        return grid(np.clip(centre + rng.normal(0, 0.25, n), -1, 1))
    if kind == "ratings":
        return [(int(r) - 3) / 2 for r in rng.integers(1, 6, n)]
    if kind == "constant":
        c = grid([rng.uniform(-1, 1)])[0]
        return [c] * n
    if kind == "all_zero":
        return [0.0] * n
    if kind == "alternating":
        return [1.0 if i % 2 == 0 else -1.0 for i in range(n)]
    if kind == "alternating_small":
        return [0.0001 if i % 2 == 0 else -0.0001 for i in range(n)]
    if kind == "drift":
        return grid(np.linspace(rng.uniform(-1, 0), rng.uniform(0, 1), n) + rng.normal(0, 0.05, n))
    if kind == "spiky":
        base = np.full(n, grid([rng.uniform(0.2, 0.6)])[0])
        idx = rng.integers(0, max(n, 1), max(1, n // 10)) if n else []
        base[idx] = rng.choice([-1.0, 1.0], len(idx))
        return grid(base)
    raise ValueError(kind)


def keys(rng, n, ties):
    """(time, tiebreak) keys; with ties, many events share a time."""
    step = rng.integers(0, 3 if ties else 1000, n)
    if not ties:
        step = step + 1
    times = 1000 + np.cumsum(step)
    tbs = rng.integers(0, 4 if ties else 1_000_000, n)
    return [(int(t), int(b)) for t, b in zip(times, tbs)]


def history(rng, kind, n, ties, shuffle, dup_frac):
    s = sentiments(rng, kind, n)
    k = keys(rng, n, ties)
    inter = [[s[i], k[i][0], k[i][1]] for i in range(n)]
    if n and dup_frac > 0:
        # Re-send some events with the same key and a different sentiment:
        # the first in input order must win.
        for i in rng.integers(0, n, max(1, int(n * dup_frac))):
            inter.append([grid([rng.uniform(-1, 1)])[0], inter[i][1], inter[i][2]])
    if shuffle:
        perm = rng.permutation(len(inter))
        inter = [inter[i] for i in perm]
    return inter


def main():
    rng = np.random.default_rng(SEED)
    kinds = ["uniform", "vader", "ratings", "constant", "all_zero", "alternating",
             "alternating_small", "drift", "spiky"]
    lengths = [0, 1, 2, 3, 4, 5, 7, 10, 50, 99, 100, 101, 102, 150, 200, 250]
    configs = [(100, 0.1)] * 6 + [(10, 0.1), (150, 0.1), (100, 0.05), (3, 0.2)]
    out = []
    case = 0
    for kind in kinds:
        for n in lengths:
            if kind in ("constant", "all_zero", "alternating", "alternating_small") and n not in (0, 1, 2, 3, 5, 100, 101, 150, 250):
                continue
            w, eps = configs[case % len(configs)]
            ties = case % 3 == 0
            shuffle = case % 2 == 1
            dup = 0.1 if case % 4 == 2 else 0.0
            inter = history(rng, kind, n, ties, shuffle, dup)
            out.append(dict(name=f"{kind}_n{n}_w{w}_eps{eps}_t{int(ties)}_s{int(shuffle)}_d{int(dup > 0)}",
                            window=w, eps=eps, interactions=inter,
                            expected=profile(normalize(inter, w), eps)))
            case += 1
    # Random extra cases (random length 0..250, random kind and config).
    for _ in range(160):
        kind = kinds[int(rng.integers(0, len(kinds)))]
        n = int(rng.integers(0, 251))
        w, eps = configs[int(rng.integers(0, len(configs)))]
        ties, shuffle = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        dup = 0.1 if rng.integers(0, 3) == 0 else 0.0
        inter = history(rng, kind, n, ties, shuffle, dup)
        out.append(dict(name=f"rand{case}_{kind}_n{n}", window=w, eps=eps, interactions=inter,
                        expected=profile(normalize(inter, w), eps)))
        case += 1
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture.jsonl")
    with open(path, "w") as f:
        for obj in out:
            f.write(json.dumps(obj, separators=(",", ":")) + "\n")
    print(f"wrote {len(out)} histories to {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
