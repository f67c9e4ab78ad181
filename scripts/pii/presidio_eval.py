#!/usr/bin/env python3
"""PII quality and speed: Microsoft Presidio's pattern recognizers against signalbox's detector,
on the same labelled corpus, in the same run.

    python3 scripts/pii/presidio_eval.py [--corpus crates/feedback/tests/data/pii_corpus.jsonl]
                                          [--runs 3] [--json-out FILE] [--engine-speed]

The first run creates a virtual environment under target/pii-venv and installs
scripts/pii/requirements.txt into it (later runs reuse it); the script then re-runs itself
there. Ours runs through `cargo run --release -p feedback --example pii_eval`.

Presidio setup: an AnalyzerEngine whose registry holds only the pattern recognizers
EmailRecognizer, PhoneRecognizer, CreditCardRecognizer, IbanRecognizer, IpRecognizer,
UsSsnRecognizer and UkNinoRecognizer. No spaCy model is downloaded or loaded: the NLP engine is
a blank English spaCy pipeline (tokenizer only), so there is no NER and no lemma-based context
boost. PhoneRecognizer is given the corpus's countries as regions (US, GB, DE, FR, IN, AU, BR,
JP; its default list lacks AU and JP and names the UK "UK", which phonenumbers does not know).
tldextract (used by EmailRecognizer) is set to its bundled public-suffix snapshot so that
nothing is fetched. Score threshold: Presidio's default (0), so every result counts.

With --engine-speed, speed only, of more than the detector: Presidio's AnalyzerEngine (set up
as above) against signalbox's whole feedback engine on the same corpus texts, one after the
other in this run, each on one thread, so items/s is items/s per core. For signalbox (through
`pii_eval --engine`): PII detection alone, `Analyzer::quick_check` (PII, redaction, toxicity,
risk) and `Analyzer::analyze` in research mode with every shipped policy rule (also sentiment
and routing); each text is a review item with a rating. Presidio detects PII only, so the
full-engine ratio compares more work on our side with less on theirs.

Scoring for both: exact match of entity type, start and end (character offsets); per type,
precision = TP / (TP + FP) and recall = TP / (TP + FN). Speed: texts per second through
`analyze` on one thread (one core), median of --runs passes over the corpus.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import venv

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV = os.path.join(ROOT, "target", "pii-venv")
REQUIREMENTS = os.path.join(ROOT, "scripts", "pii", "requirements.txt")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
TYPES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN",
         "UK_NINO"]


def ensure_venv():
    """Re-run this script inside target/pii-venv, creating and filling it when needed."""
    if os.path.abspath(sys.prefix) == os.path.abspath(VENV):
        return
    if not os.path.exists(VENV_PYTHON):
        print(f"creating {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    check = subprocess.run([VENV_PYTHON, "-c", "import presidio_analyzer"], capture_output=True)
    if check.returncode != 0:
        print("installing " + REQUIREMENTS, file=sys.stderr)
        subprocess.run([VENV_PYTHON, "-m", "pip", "install", "-q", "-r", REQUIREMENTS], check=True)
    os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])


def presidio_analyzer():
    import logging

    import spacy
    import tldextract
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
        UkNinoRecognizer, UsSsnRecognizer)

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    # Offline: the public-suffix list shipped with tldextract, no download.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class BlankSpacyEngine(SpacyNlpEngine):
        """spaCy's blank English pipeline: tokens only, no statistical model."""

        def __init__(self):
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

        def load(self):
            self.nlp = {"en": spacy.blank("en")}

    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in [
        EmailRecognizer(),
        PhoneRecognizer(supported_regions=("US", "GB", "DE", "FR", "IN", "AU", "BR", "JP")),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UkNinoRecognizer(),
    ]:
        registry.add_recognizer(recognizer)
    engine = BlankSpacyEngine()
    engine.load()
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def score(corpus, predictions):
    counts = {t: {"tp": 0, "fp": 0, "fn": 0} for t in TYPES}
    for item, found in zip(corpus, predictions):
        labels = {(e["type"], e["start"], e["end"]) for e in item["entities"]}
        found = set(found)
        for t, s, e in found:
            c = counts.setdefault(t, {"tp": 0, "fp": 0, "fn": 0})
            c["tp" if (t, s, e) in labels else "fp"] += 1
        for t, s, e in labels - found:
            counts[t]["fn"] += 1
    for c in counts.values():
        c["precision"] = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        c["recall"] = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    return counts


def run_presidio(corpus, runs):
    analyzer = presidio_analyzer()
    texts = [item["text"] for item in corpus]
    analyzer.analyze(texts[0], language="en")  # warm-up
    predictions = [[(r.entity_type, r.start, r.end) for r in analyzer.analyze(t, language="en")]
                   for t in texts]
    return score(corpus, predictions), presidio_speed(analyzer, texts, runs)


def presidio_speed(analyzer, texts, runs):
    """Median items/s and MB/s of `runs` passes of analyzer.analyze over texts."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        for t in texts:
            analyzer.analyze(t, language="en")
        seconds.append(time.perf_counter() - started)
    median = sorted(seconds)[len(seconds) // 2]
    total_bytes = sum(len(t.encode()) for t in texts)
    return {"items_per_second": len(texts) / median, "mb_per_second": total_bytes / median / 1e6}


def run_ours(corpus_path):
    base = ["cargo", "run", "--quiet", "--release", "-p", "feedback", "--example", "pii_eval", "--",
            "--corpus", corpus_path]
    quality = json.loads(subprocess.run(base, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    speed = json.loads(subprocess.run(base + ["--speed"], check=True, capture_output=True, text=True,
                                      cwd=ROOT).stdout)
    return quality["per_type"], speed["speed"]


def run_ours_engine(corpus_path, runs):
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "feedback", "--example", "pii_eval", "--",
           "--corpus", corpus_path, "--engine", "--runs", str(runs)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout)["engine"]


def engine_speed(corpus, corpus_path, runs, json_out):
    ours = run_ours_engine(corpus_path, runs)
    analyzer = presidio_analyzer()
    texts = [item["text"] for item in corpus]
    analyzer.analyze(texts[0], language="en")  # warm-up
    theirs = presidio_speed(analyzer, texts, runs)
    base = theirs["items_per_second"]
    rows = [
        ("Presidio AnalyzerEngine.analyze (7 pattern recognizers)", theirs),
        ("signalbox pii::Detector::detect", ours["detect"]),
        ("signalbox Analyzer::quick_check", ours["quick_check"]),
        ("signalbox Analyzer::analyze (research mode, all rules)", ours["analyze"]),
    ]
    print(f"engine speed on {len(texts)} texts, one thread each (items/s per core), "
          f"median of {runs} passes:")
    for name, s in rows:
        print(f"  {name:<58} {s['items_per_second']:>12,.0f} items/s {s['mb_per_second']:>8.2f} MB/s "
              f"{s['items_per_second'] / base:>8,.1f}x Presidio")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"signalbox": ours, "presidio": {"analyze": theirs}}, f, indent=2)


def main():
    ensure_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=os.path.join(ROOT, "crates/feedback/tests/data/pii_corpus.jsonl"))
    parser.add_argument("--runs", type=int, default=3, help="timed passes over the corpus (median)")
    parser.add_argument("--json-out", help="also write both results as JSON to this file")
    parser.add_argument("--engine-speed", action="store_true",
                        help="speed only: Presidio's analyzer against signalbox's whole engine")
    args = parser.parse_args()
    corpus_path = os.path.abspath(args.corpus)
    with open(corpus_path, encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f if line.strip()]
    if args.engine_speed:
        engine_speed(corpus, corpus_path, args.runs, args.json_out)
        return

    print(f"corpus: {len(corpus)} texts; exact type+span match", file=sys.stderr)
    ours, ours_speed = run_ours(corpus_path)
    theirs, theirs_speed = run_presidio(corpus, args.runs)

    header = f"{'entity':<14} | {'signalbox P':>11} {'R':>6} | {'Presidio P':>10} {'R':>6} | {'labels':>6}"
    print(header)
    print("-" * len(header))
    for t in TYPES:
        o = ours.get(t, {"precision": 1.0, "recall": 1.0, "tp": 0, "fn": 0})
        p = theirs[t]
        labels = p["tp"] + p["fn"]
        print(f"{t:<14} | {o['precision']:>11.4f} {o['recall']:>6.4f} | {p['precision']:>10.4f} "
              f"{p['recall']:>6.4f} | {labels:>6}")
    print()
    print(f"speed, one core, median of passes over the corpus:")
    print(f"  signalbox  {ours_speed['items_per_second']:>12,.0f} items/s  {ours_speed['mb_per_second']:>8.2f} MB/s")
    print(f"  Presidio   {theirs_speed['items_per_second']:>12,.0f} items/s  {theirs_speed['mb_per_second']:>8.2f} MB/s")
    print(f"  ratio      {ours_speed['items_per_second'] / theirs_speed['items_per_second']:>12,.0f}x")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"signalbox": {"per_type": ours, "speed": ours_speed},
                       "presidio": {"per_type": theirs, "speed": theirs_speed}}, f, indent=2)


if __name__ == "__main__":
    main()
