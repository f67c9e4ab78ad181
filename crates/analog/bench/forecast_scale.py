#!/usr/bin/env python3
"""The forecaster at scale, in one run: build, size, memory, latency, recall, FAISS.

Stages (each timed; the load average is recorded before each, since the figures
depend on what else runs on the machine):

  1. generate  `signalbox forecast generate` (skipped when --data exists)
  2. build     `signalbox forecast build`: wall time, peak RSS (the child's
               rusage), the model directory's bytes
  3. serve     `signalbox serve --forecast-index DIR --rate-limits off` on a
               free loopback port, a fresh data directory, the demo tenant's key;
               VmRSS, RssAnon, RssFile from /proc after start
  4. load      `signalbox loadtest` on /forecast with `Cache-Control: no-cache`
               (every request computed) at --connections: per horizon, the
               stations of a mixed set round-robin (several --url), then all
               horizons and stations mixed; p50/p95/p99; RSS again after load
  5. recall    `signalbox forecast recall --json`: per horizon, recall@k of the
               model's index against exact search and the search times
  6. faiss     `signalbox forecast export-vectors` for one station and horizon,
               then faiss_compare.py on those vectors with the model's IVF-PQ
               settings (recall@10 against exact L2 for both libraries)

Prints one table and writes JSON (--json). Uses the release binary
(target/release/signalbox, built with `cargo build --release` if missing).

Usage (from the repository root):
  python3 crates/analog/bench/forecast_scale.py --data scale.csv --model scale-model \\
      [--stations 100 --years 30 --seed 1] [--build-args "--index auto"] \\
      [--connections 32 --duration 20s] [--skip-build] [--skip-faiss] \\
      [--json forecast_scale.json]
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HORIZONS = ["6h", "12h", "24h", "48h"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return list(os.getloadavg())


def run_measured(cmd, **kw):
    """Runs cmd to completion; returns (wall seconds, peak RSS bytes, stdout)."""
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, **kw)
    # Read stdout on a thread: wait4 must reap the child itself to get its rusage.
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[1:3]} failed with exit code {proc.returncode}")
    # Linux reports ru_maxrss in KiB.
    return wall, usage.ru_maxrss * 1024, chunks[0].decode() if chunks else ""


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def proc_memory(pid):
    """VmRSS, RssAnon, RssFile (bytes) of a running process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def http_json(url, key, timeout=30):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


class Server:
    """`signalbox serve` on 127.0.0.1:0 with a fresh data directory."""

    def __init__(self, binary, model, extra):
        self.data_dir = tempfile.mkdtemp(prefix="forecast-scale-")
        env = dict(os.environ, SIGNALBOX_DATA_DIR=self.data_dir, SIGNALBOX_LOG_FORMAT="human")
        for var in ("SIGNALBOX_CONFIG", "DATABASE_URL"):
            env.pop(var, None)
        cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--forecast-index", model,
               "--rate-limits", "off"] + extra
        log("$ " + " ".join(shlex.quote(c) for c in cmd))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addr = None
        self.lines = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                m = re.search(r"listening on http://(\S+)", line)
                if m and not self.addr:
                    self.addr = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        # A large model is checked (CRC) and warmed before the server listens.
        if not ready.wait(1800) or not self.addr:
            self.stop()
            sys.exit("serve did not start:\n" + "\n".join(self.lines[-20:]))
        self.start_seconds = time.monotonic() - self.started
        with open(os.path.join(self.data_dir, "demo-tenant.json")) as f:
            self.key = json.load(f)["api_key"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def loadtest(binary, addr, key, paths, connections, duration):
    cmd = [binary, "loadtest", "--json", "--connections", str(connections), "--duration", duration,
           "-H", f"Authorization: Bearer {key}", "-H", "Cache-Control: no-cache"]
    for p in paths:
        cmd += ["--url", f"http://{addr}{p}"]
    _, _, out = run_measured(cmd)
    report = json.loads(out)
    bad = {s: n for s, n in report["status_counts"].items() if s != "200"}
    if bad or report["transport_errors"]:
        log(f"warning: non-200 answers {bad}, {report['transport_errors']} transport errors")
    return report


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.abspath(os.path.join(here, "..", "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="station CSV; generated when missing")
    ap.add_argument("--model", required=True, help="model directory to build (and serve)")
    ap.add_argument("--stations", type=int, default=100)
    ap.add_argument("--years", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default=os.path.join(repo, "target", "release", "signalbox"))
    ap.add_argument("--build-args", default="", help="extra `forecast build` flags, e.g. \"--index auto\"")
    ap.add_argument("--serve-args", default="", help="extra `serve` flags")
    ap.add_argument("--skip-build", action="store_true", help="serve an existing --model")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", default="20s", help="per loadtest run")
    ap.add_argument("--mixed-stations", type=int, default=8, help="stations in the mixed set")
    ap.add_argument("--recall-queries", type=int, default=500)
    ap.add_argument("--faiss-station", help="default: the mixed set's first station")
    ap.add_argument("--faiss-horizon", default="24h")
    ap.add_argument("--faiss-queries", type=int, default=1000)
    ap.add_argument("--faiss-rounds", type=int, default=3)
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--json", default="forecast_scale.json")
    args = ap.parse_args()

    if not os.path.exists(args.binary):
        log("building the release binary")
        subprocess.check_call(["cargo", "build", "--release", "--locked", "-p", "signalbox"], cwd=repo)
    result = dict(stations=args.stations, years=args.years, seed=args.seed, connections=args.connections,
                  duration=args.duration, cores=os.cpu_count(), stages={})
    stages = result["stages"]

    # 1. generate
    if os.path.exists(args.data):
        log(f"{args.data} exists: not generating")
        stages["generate"] = dict(skipped=True, bytes=os.path.getsize(args.data))
    else:
        la = loadavg()
        wall, rss, _ = run_measured([args.binary, "forecast", "generate", "--stations", str(args.stations),
                                     "--years", str(args.years), "--seed", str(args.seed), "--out", args.data])
        stages["generate"] = dict(seconds=wall, peak_rss=rss, bytes=os.path.getsize(args.data), loadavg=la)

    # 2. build
    if args.skip_build:
        stages["build"] = dict(skipped=True)
    else:
        la = loadavg()
        wall, rss, _ = run_measured([args.binary, "forecast", "build", "--data", args.data, "--out", args.model]
                                    + shlex.split(args.build_args))
        stages["build"] = dict(seconds=wall, peak_rss=rss, loadavg=la)
    stages["build"]["model_bytes"] = dir_bytes(args.model)

    # 3. serve
    la = loadavg()
    server = Server(args.binary, args.model, shlex.split(args.serve_args))
    try:
        stages["serve"] = dict(start_seconds=server.start_seconds, loadavg=la,
                               memory_after_start=proc_memory(server.proc.pid))
        catalogue = http_json(f"http://{server.addr}/api/v1/forecast/catalogue", server.key)
        codes = [s["station"] for s in catalogue["stations"]]
        step = max(1, len(codes) // args.mixed_stations)
        mixed = codes[::step][: args.mixed_stations]
        try:
            diagnostics = http_json(f"http://{server.addr}/api/v1/forecast/diagnostics", server.key)
            stages["serve"]["resident_bytes"] = diagnostics.get("model", {}).get("resident_bytes")
        except Exception as e:  # noqa: BLE001 - optional figure
            log(f"diagnostics unavailable: {e}")

        # 4. load: per horizon (its stations round-robin), then everything mixed.
        stages["load"] = {}
        for h in HORIZONS + ["mixed"]:
            hs = HORIZONS if h == "mixed" else [h]
            paths = [f"/forecast?station={s}&horizon={x}" for x in hs for s in mixed]
            la = loadavg()
            report = loadtest(args.binary, server.addr, server.key, paths, args.connections, args.duration)
            stages["load"][h] = dict(loadavg=la, requests=report["requests"],
                                     requests_per_second=report["requests_per_second"],
                                     latency_ms=report["latency_ms"], status_counts=report["status_counts"],
                                     transport_errors=report["transport_errors"],
                                     urls=[dict(url=u["url"], p50=u["latency_ms"]["p50"], p99=u["latency_ms"]["p99"])
                                           for u in report.get("urls", [])])
        stages["serve"]["memory_after_load"] = proc_memory(server.proc.pid)
        try:
            # The server's own search times per horizon (over its last computations).
            diagnostics = http_json(f"http://{server.addr}/api/v1/forecast/diagnostics", server.key)
            stages["serve"]["search_diagnostics"] = diagnostics.get("horizons")
        except Exception as e:  # noqa: BLE001 - optional figure
            log(f"diagnostics unavailable: {e}")
    finally:
        server.stop()

    # 5. recall
    la = loadavg()
    wall, _, out = run_measured([args.binary, "forecast", "recall", "--index", args.model,
                                 "--queries", str(args.recall_queries), "--k", "10", "--json"])
    stages["recall"] = dict(seconds=wall, loadavg=la, report=json.loads(out))

    # 6. FAISS on one station-horizon's exported vectors, with the model's IVF-PQ settings.
    if not args.skip_faiss:
        station = args.faiss_station or mixed[0]
        vectors = os.path.join(tempfile.gettempdir(), f"forecast-scale-{station}-{args.faiss_horizon}.f32")
        _, _, out = run_measured([args.binary, "forecast", "export-vectors", "--index", args.model,
                                  "--station", station, "--horizon", args.faiss_horizon, "--out", vectors, "--json"])
        exported = json.loads(out)
        cmd = [sys.executable, os.path.join(here, "faiss_compare.py"), "--sets", "weather", "--vectors", vectors,
               "--dim", str(exported["dim"]), "--queries", str(args.faiss_queries),
               "--rounds", str(args.faiss_rounds), "--json", vectors + ".json"]
        ivf = exported.get("ivfpq")
        if ivf:
            cmd += ["--ivf", ",".join(str(ivf[k]) for k in ("nlist", "m", "nbits", "nprobe", "shortlist"))]
        la = loadavg()
        run_measured(cmd, cwd=repo)
        with open(vectors + ".json") as f:
            stages["faiss"] = dict(station=station, horizon=args.faiss_horizon, exported=exported, loadavg=la,
                                   compare=json.load(f)["sets"]["weather"])
        os.remove(vectors)

    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print_table(result)
    log(f"wrote {args.json}")


def mib(x):
    return "-" if x is None else f"{x / 2**20:,.0f} MiB"


def print_table(r):
    s = r["stages"]
    print(f"forecast at scale: {r['stations']} stations x {r['years']} year(s), seed {r['seed']}, "
          f"{r['cores']} cores")
    rows = []
    g = s["generate"]
    rows.append(("generate", "skipped (file exists)" if g.get("skipped") else
                 f"{g['seconds']:.0f} s, {mib(g['bytes'])} CSV, peak RSS {mib(g['peak_rss'])}"))
    b = s["build"]
    rows.append(("build", ("skipped" if b.get("skipped") else
                           f"{b['seconds']:.0f} s, peak RSS {mib(b['peak_rss'])}, load {b['loadavg'][0]:.1f}")
                 + f"; model {mib(b['model_bytes'])}"))
    v = s["serve"]
    for when in ("memory_after_start", "memory_after_load"):
        m = v.get(when, {})
        rows.append((f"serve {when.split('_', 1)[1].replace('_', ' ')}",
                     f"VmRSS {mib(m.get('VmRSS'))}, RssAnon {mib(m.get('RssAnon'))}, RssFile {mib(m.get('RssFile'))}"))
    rows.append(("serve start", f"{v['start_seconds']:.1f} s; resident_bytes {mib(v.get('resident_bytes'))}"))
    for h, l in s.get("load", {}).items():
        lat = l["latency_ms"]
        rows.append((f"/forecast {h} @{r['connections']}",
                     f"p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f} ms, "
                     f"{l['requests_per_second']:,.0f} req/s, load {l['loadavg'][0]:.1f}"))
    rec = s["recall"]["report"]
    for line in recall_lines(rec):
        rows.append(("recall", line))
    f = s.get("faiss")
    if f:
        c = f["compare"]
        ivf = c["ivf"]
        note = f" (m {ivf['m_requested']} does not divide {c['dim']})" if "m_requested" in ivf else ""
        rows.append(("faiss set", f"{f['station']} {f['horizon']}: {c['n']} x {c['dim']}, {c['nq']} queries, "
                                  f"nlist {ivf['nlist']} m {ivf['m']}{note} nbits {ivf['nbits']} "
                                  f"nprobe {ivf['nprobe']} shortlist {ivf['shortlist']}"))
        for a, fa in zip(c["analog"]["rows"], c["faiss"]):
            rec_text = "" if a["recall"] is None else f", recall@10 {a['recall']:.3f} / {fa['recall']:.3f}"
            rows.append((f"faiss {a['index']}", f"p50 {a['single_p50_us']:.1f} / {fa['single_p50_us']:.1f} us"
                                                f"{rec_text} (analog / FAISS)"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def recall_lines(rec):
    """One line per horizon and similarity from `forecast recall --json` (a list of rows)."""
    if not isinstance(rec, list):
        return [json.dumps(rec)[:200]]
    return [f"{r['horizon']:>3} {r['similarity']:<4} {'+'.join(r['kinds']):<12} recall@{r['k']} {r['recall']:.3f}"
            f"  index p50/p99 {r['index_us_p50']:.0f}/{r['index_us_p99']:.0f} us"
            f"  exact {r['exact_us_p50']:.0f}/{r['exact_us_p99']:.0f} us ({r['queries']} queries)"
            for r in rec]


if __name__ == "__main__":
    main()
