#!/usr/bin/env python3
"""analog vs FAISS on the same vectors and queries, in one run.

Installs faiss-cpu and numpy with pip when missing, writes each vector set
as raw little-endian f32 files, runs the Rust side
(`cargo run --release -p analog --example versus`) and FAISS on the same
files, prints one table with our/FAISS ratios and writes JSON.

Vector sets:
  random52_6574, random52_13148  52-d standard normal, fixed seed (the seed's
                                  FlatIP / IVFPQ index sizes), 1,000 separate
                                  queries from the same distribution
  weather                         --model-file MODEL/JFK.24h.sbx: the state
                                  vectors the forecaster searches (from
                                  `signalbox forecast build`), or
                                  --vectors FILE --dim D (raw LE f32), or
                                  built from --weather-csv: per station,
                                  z-scored temp, dewp, humid, u, v, pressure,
                                  precip over trailing 6-hour windows without
                                  gaps; the last 10% in time are the queries

Measured for flat IP, flat L2, IVF-PQ (L2) and IVF-PQ re-ranked (FAISS
IndexRefineFlat over IndexIVFPQ, same nlist/m/nbits/nprobe/shortlist):
single-query k=10 latency p50/p99 on one thread, batch throughput on two
threads (faiss.omp_set_num_threads; ours splits the batch over two
std::thread::scope threads), recall@10 against exact L2 for the IVF rows.

--ivf NLIST,M,NBITS,NPROBE,SHORTLIST replaces the weather set's IVF-PQ settings
(e.g. a forecast model's, for vectors from `signalbox forecast export-vectors`).
FAISS needs m to divide the dimension: when it does not, both libraries use the
largest divisor below it, and the run says so (and records m_requested).
--queries N searches an evenly spaced sample of N of the held-out queries
(large sets: every query of a 26k-query hold-out times 5 rounds is too long).

Usage (from the repository root):
  python3 crates/analog/bench/faiss_compare.py --weather-csv demo/nyc_weather_2013.csv \
      [--vectors FILE --dim D] [--sets random52_6574,random52_13148,weather] \
      [--ivf 64,8,8,8,50] [--queries 1000] [--rounds 5] [--json bench-results.json]
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time


def ensure(package, module):
    try:
        return importlib.import_module(module)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", package])
        return importlib.import_module(module)


np = ensure("numpy", "numpy")
faiss = ensure("faiss-cpu", "faiss")

K = 10
# Per-set IVF-PQ configuration (m must divide the dimension for FAISS),
# chosen so re-ranked recall@10 is >= 0.95 with a margin. The weather states
# have structure: nlist 64, nprobe 8 and a shortlist of 5k give ~0.99 (nprobe
# 4 with 3k gave ~0.97). Random 52-d Gaussian data has none: cells and PQ
# codes both rank poorly, so it needs 2-d sub-vectors, 3/4 of the cells and
# a shortlist of 10k (nprobe 32 reached only ~0.90); there, flat search is
# the better index, as it is for FAISS.
IVF = {
    "random52_6574": dict(nlist=64, m=26, nbits=8, nprobe=48, shortlist=100),
    "random52_13148": dict(nlist=64, m=26, nbits=8, nprobe=48, shortlist=100),
    "weather": dict(nlist=64, m=14, nbits=8, nprobe=8, shortlist=50),
}


def random_set(n, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 52), dtype=np.float32)
    queries = rng.standard_normal((1000, 52), dtype=np.float32)
    return base, queries


def weather_vectors(csv_path, station, window=6):
    """Trailing `window`-hour state vectors for one station, in time order."""
    import csv
    from datetime import datetime

    rows = []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            if r["origin"] != station:
                continue

            def num(key):
                v = r[key]
                return float("nan") if v == "NA" else float(v)

            speed, direction = num("wind_speed"), num("wind_dir")
            if speed > 200:  # the one bogus 1048 mph reading
                speed = float("nan")
            if speed == 0:
                u = v = 0.0
            else:
                # Meteorological direction is where the wind comes from.
                rad = np.deg2rad(direction)
                u, v = -speed * np.sin(rad), -speed * np.cos(rad)
            t = datetime.strptime(r["time_hour"], "%Y-%m-%dT%H:%M:%SZ")
            rows.append((t, [num("temp"), num("dewp"), num("humid"), u, v, num("pressure"), num("precip")]))
    rows.sort(key=lambda x: x[0])
    hours = np.array([int(t.timestamp()) // 3600 for t, _ in rows])
    x = np.array([v for _, v in rows], dtype=np.float64)
    x = (x - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0)
    vectors = []
    for end in range(window - 1, len(rows)):
        lo = end - window + 1
        if hours[end] - hours[lo] != window - 1:
            continue  # a gap in the hours
        w = x[lo : end + 1]
        if np.isnan(w).any():
            continue
        vectors.append(w.reshape(-1))
    return np.array(vectors, dtype=np.float32)


def model_states(path):
    """The `states` section of a forecast model file (`signalbox forecast build`), in time order.

    Reads the container directly (layout in crates/analog/src/format.rs): a 64-byte header whose
    bytes 12..16 hold the section count, then 48-byte entries of name[24], type u32, pad u32,
    offset u64, length u64. The dimension is the states' length over the number of times.
    """
    import struct
    raw = open(path, "rb").read()
    if raw[:8] != b"SBXINDEX":
        sys.exit(f"{path}: not a signalbox index file")
    (count,) = struct.unpack_from("<I", raw, 12)
    sections = {}
    for i in range(count):
        entry = raw[64 + 48 * i: 64 + 48 * (i + 1)]
        name = entry[:24].rstrip(b"\0").decode()
        _, _, offset, length = struct.unpack_from("<IIQQ", entry, 24)
        sections[name] = (offset, length)
    if "states" not in sections or "times" not in sections:
        sys.exit(f"{path}: no states/times sections (is it a station-horizon model file?)")
    n = sections["times"][1] // 8
    offset, length = sections["states"]
    states = np.frombuffer(raw, dtype="<f4", count=length // 4, offset=offset)
    return np.ascontiguousarray(states.reshape(n, -1))


def held_out(vectors, max_queries=None):
    """The first 90% in time are indexed, the last 10% are the queries (an evenly spaced
    sample of at most `max_queries` of them)."""
    cut = int(len(vectors) * 0.9)
    queries = vectors[cut:]
    if max_queries and len(queries) > max_queries:
        queries = queries[np.linspace(0, len(queries) - 1, max_queries).round().astype(int)]
    return np.ascontiguousarray(vectors[:cut]), np.ascontiguousarray(queries)


def parse_ivf(text):
    """NLIST,M,NBITS,NPROBE,SHORTLIST -> the IVF settings dict."""
    parts = text.split(",")
    if len(parts) != 5 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        sys.exit(f"--ivf: '{text}' is not NLIST,M,NBITS,NPROBE,SHORTLIST (five positive whole numbers)")
    nlist, m, nbits, nprobe, shortlist = (int(p) for p in parts)
    return dict(nlist=nlist, m=m, nbits=nbits, nprobe=nprobe, shortlist=shortlist)


def time_single(index, queries, rounds):
    faiss.omp_set_num_threads(1)
    for q in queries:  # warm-up
        index.search(q[None, :], K)
    times = []
    for _ in range(rounds):
        for q in queries:
            q = q[None, :]
            t = time.perf_counter()
            index.search(q, K)
            times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return times[len(times) // 2], times[round((len(times) - 1) * 0.99)]


def time_batch(index, queries, rounds):
    faiss.omp_set_num_threads(2)
    index.search(queries, K)  # warm-up
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        index.search(queries, K)
        rates.append(len(queries) / (time.perf_counter() - t))
    rates.sort()
    return rates[len(rates) // 2]


def recall(got, truth):
    return float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth)]))


def faiss_rows(base, queries, ivf, rounds):
    d = base.shape[1]
    rows = []
    truth = None
    for name, index in [("flat_ip", faiss.IndexFlatIP(d)), ("flat_l2", faiss.IndexFlatL2(d))]:
        index.add(base)
        p50, p99 = time_single(index, queries, rounds)
        qps = time_batch(index, queries, rounds)
        if name == "flat_l2":
            truth = index.search(queries, K)[1]
        rows.append(dict(index=name, single_p50_us=p50, single_p99_us=p99, batch_qps=qps, recall=None))

    quantizer = faiss.IndexFlatL2(d)
    pq = faiss.IndexIVFPQ(quantizer, d, ivf["nlist"], ivf["m"], ivf["nbits"])
    faiss.omp_set_num_threads(2)
    pq.train(base)
    pq.nprobe = ivf["nprobe"]
    # IndexRefineFlat must wrap an empty index; adding through it fills both
    # the IVF-PQ lists and its own flat copy of the raw vectors.
    refine = faiss.IndexRefineFlat(pq)
    refine.k_factor = max(ivf["shortlist"], K) / K
    refine.add(base)
    for name, index in [("ivfpq", pq), ("ivfpq_refine", refine)]:
        got = index.search(queries, K)[1]
        p50, p99 = time_single(index, queries, rounds)
        qps = time_batch(index, queries, rounds)
        rows.append(
            dict(index=name, single_p50_us=p50, single_p99_us=p99, batch_qps=qps, recall=recall(got, truth))
        )
    return rows


def ours(base, queries, ivf, rounds, workdir, repo):
    d = base.shape[1]
    bfile, qfile, jfile = (os.path.join(workdir, n) for n in ("base.f32", "queries.f32", "ours.json"))
    base.astype("<f4").tofile(bfile)
    queries.astype("<f4").tofile(qfile)
    spec = ",".join(f"{k}={v}" for k, v in ivf.items())
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "analog", "--example", "versus", "--",
           "--base", bfile, "--queries", qfile, "--dim", str(d), "--k", str(K),
           "--rounds", str(rounds), "--ivf", spec, "--json", jfile]
    subprocess.check_call(cmd, cwd=repo, stdout=sys.stderr)
    with open(jfile) as f:
        return json.load(f)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.abspath(os.path.join(here, "..", "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="random52_6574,random52_13148,weather")
    ap.add_argument("--vectors", help="weather state vectors, raw little-endian f32")
    ap.add_argument("--dim", type=int, help="dimension of --vectors")
    ap.add_argument("--model-file", help="weather set = the state vectors of a forecast model file, "
                    "e.g. MODEL/JFK.24h.sbx from `signalbox forecast build`")
    ap.add_argument("--weather-csv", default=os.path.join(repo, "demo", "nyc_weather_2013.csv"))
    ap.add_argument("--station", default="JFK")
    ap.add_argument("--ivf", type=parse_ivf, help="NLIST,M,NBITS,NPROBE,SHORTLIST for the weather/vectors set")
    ap.add_argument("--queries", type=int, help="search at most this many of the held-out queries")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default="faiss_compare.json")
    args = ap.parse_args()

    results = dict(faiss_version=faiss.__version__, sets={})
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.sets.split(","):
            if name == "random52_6574":
                base, queries = random_set(6574, 6574)
            elif name == "random52_13148":
                base, queries = random_set(13148, 13148)
            elif name == "weather":
                if args.model_file:
                    vectors = model_states(args.model_file)
                elif args.vectors:
                    if not args.dim:
                        sys.exit("--vectors needs --dim")
                    vectors = np.fromfile(args.vectors, dtype="<f4").reshape(-1, args.dim)
                else:
                    vectors = weather_vectors(args.weather_csv, args.station)
                base, queries = held_out(vectors, args.queries)
            else:
                sys.exit(f"unknown set {name}")
            ivf = dict(IVF.get(name, IVF["weather"]))
            if name == "weather" and args.ivf:
                ivf = dict(args.ivf)
            d = base.shape[1]
            if d % ivf["m"] != 0:  # FAISS needs m | d: take the largest divisor <= m
                m = max(m for m in range(1, ivf["m"] + 1) if d % m == 0)
                print(f"== {name}: m {ivf['m']} does not divide dim {d}; FAISS and analog both use m {m}",
                      file=sys.stderr)
                ivf["m_requested"], ivf["m"] = ivf["m"], m
            print(f"== {name}: {len(base)} x {d}, {len(queries)} queries, ivf {ivf}", file=sys.stderr)
            mine = ours(base, queries, {k: v for k, v in ivf.items() if k != "m_requested"},
                        args.rounds, workdir, repo)
            theirs = faiss_rows(base, queries, ivf, args.rounds)
            results["sets"][name] = dict(n=len(base), nq=len(queries), dim=d, ivf=ivf, analog=mine, faiss=theirs)

    header = f"{'set':<15} {'index':<13} {'p50 us':>16} {'p99 us':>16} {'batch q/s (2 thr)':>22} {'recall@10':>12}  speedup p50 / batch"
    print(header)
    print("-" * len(header))
    for name, r in results["sets"].items():
        for a, f in zip(r["analog"]["rows"], r["faiss"]):
            rec = "-" if a["recall"] is None else f"{a['recall']:.3f}/{f['recall']:.3f}"
            print(
                f"{name:<15} {a['index']:<13} {a['single_p50_us']:>7.1f}/{f['single_p50_us']:<8.1f}"
                f" {a['single_p99_us']:>7.1f}/{f['single_p99_us']:<8.1f}"
                f" {a['batch_qps']:>10.0f}/{f['batch_qps']:<11.0f} {rec:>12}"
                f"  {f['single_p50_us'] / a['single_p50_us']:5.1f}x / {a['batch_qps'] / f['batch_qps']:5.1f}x"
            )
    print("(each cell: analog/FAISS; speedup = FAISS time / ours, our throughput / FAISS's)")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
