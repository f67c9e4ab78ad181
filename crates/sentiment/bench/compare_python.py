#!/usr/bin/env python3
"""Measure the Python reference's throughput on the parity fixture texts.

    pip install vaderSentiment==3.3.2
    python3 crates/sentiment/bench/compare_python.py [REPETITIONS]

Scores every text of fixtures/vader_3.3.2.jsonl with
SentimentIntensityAnalyzer().polarity_scores, single core (the process is
pinned to one CPU where the OS allows it), REPETITIONS times (default 5), and
prints the median docs/s.

The Rust side, on the same texts:

    cargo bench -p sentiment --bench vader

criterion prints `thrpt: [low median high] Kelem/s`; one element is one
document, so the middle figure is the Rust median docs/s.  The ratio is
Rust docs/s divided by the Python figure printed here.
"""

import json
import os
import statistics
import sys
import time

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "vader_3.3.2.jsonl")


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass
    with open(FIXTURE, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    analyzer = SentimentIntensityAnalyzer()
    score = analyzer.polarity_scores
    for t in texts[:200]:  # warm-up
        score(t)
    rates = []
    for rep in range(reps):
        start = time.perf_counter()
        for t in texts:
            score(t)
        elapsed = time.perf_counter() - start
        rates.append(len(texts) / elapsed)
        print(f"rep {rep + 1}: {elapsed:.3f} s, {rates[-1]:,.0f} docs/s", file=sys.stderr)
    print(f"python vaderSentiment 3.3.2: {len(texts)} docs, median {statistics.median(rates):,.0f} docs/s "
          f"over {reps} repetitions (single core)")
    print("rust: cargo bench -p sentiment --bench vader   (thrpt median, Kelem/s = 1000 docs/s)")


if __name__ == "__main__":
    main()
