#!/usr/bin/env python3
"""No-op jobs through Celery 5 on Redis: the seed's own stack, as the speed baseline for
signalbox's job queues (`scripts/bench/jobs_vs_celery.sh` runs both).

One run: start a Celery worker (prefork pool, concurrency = CPU cores), enqueue N no-op tasks
with `.delay()` from this client, wait until every task's result is stored, and print one JSON
line:

    {"system": "celery", "jobs": N, "jobs_per_second": ..., "enqueue_p50_ms": ...,
     "enqueue_p99_ms": ..., "seconds": ..., "prefetch": ..., "concurrency": ..., ...}

`jobs_per_second` is N over the time from the first enqueue to the last completion (the latest
`date_done` of the stored results), so enqueueing and working overlap as they do in service.
Enqueue latency is the time one `.delay()` call takes.

Settings are seed 002's `_configure_celery` where they apply to a no-op task: `task_acks_late`
(a task is acknowledged after it ran, as signalbox completes a job after its handler),
`task_reject_on_worker_lost`, JSON serialisation, a Redis result backend with gzip-compressed
results and a 24 h expiry, task events sent (`worker_send_task_events`,
`task_send_sent_event`), the 3000 s / 3600 s soft and hard time limits. Prefetch is the seed's
`worker_prefetch_multiplier=1` by default; `--prefetch 4` measures the throughput a larger
prefetch buys (the seed's normal queue prefetches 4). `--no-events` turns the monitoring events
off, Celery's fastest setting for comparison.

Redis: `--redis-url` (default redis://127.0.0.1:6379), using two dedicated database numbers
(`--broker-db` 14 for the broker, `--result-db` 15 for results), emptied before and after the
run. Celery and redis-py are installed (pinned in requirements-celery.txt) into a virtualenv
under the repository's `target/bench-venv/celery` on first use, or `CELERY_BENCH_VENV`.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REQUIREMENTS = os.path.join(HERE, "requirements-celery.txt")
VENV = os.environ.get("CELERY_BENCH_VENV", os.path.join(REPO, "target", "bench-venv", "celery"))
QUEUE = "signalbox_bench"


def ensure_venv():
    """Re-runs this script inside the pinned virtualenv, creating it when missing or stale."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    with open(REQUIREMENTS) as f:
        wanted = f.read()
    stamp = os.path.join(VENV, "signalbox-requirements.txt")
    current = None
    if os.path.exists(stamp):
        with open(stamp) as f:
            current = f.read()
    if not os.path.exists(python) or current != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
        subprocess.run(
            [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
             "-q", "-r", REQUIREMENTS],
            check=True,
        )
        with open(stamp, "w") as f:
            f.write(wanted)
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def redis_url(base, db):
    return f"{base.rstrip('/')}/{db}"


def make_app(args):
    from celery import Celery

    app = Celery(
        "signalbox_bench",
        broker=redis_url(args.redis_url, args.broker_db),
        backend=redis_url(args.redis_url, args.result_db),
    )
    app.conf.update(
        task_default_queue=QUEUE,
        worker_prefetch_multiplier=args.prefetch,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=3600,
        task_soft_time_limit=3000,
        result_expires=86400,
        result_compression="gzip",
        worker_send_task_events=args.events,
        task_send_sent_event=args.events,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_log_color=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="signalbox_bench.noop")
    def noop(i):
        return None

    return app, noop


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    # Nearest rank: the smallest value with at least q of the values at or below it.
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def flush(args):
    import redis

    for db in (args.broker_db, args.result_db):
        redis.Redis.from_url(redis_url(args.redis_url, db)).flushdb()


def start_worker(args):
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env["CELERY_BENCH_ARGS"] = json.dumps(vars(args))
    cmd = [
        sys.executable, "-m", "celery", "-A", "celery_noop:worker_app", "worker",
        "--pool", "prefork", "--concurrency", str(args.concurrency),
        "--prefetch-multiplier", str(args.prefetch), "-Q", QUEUE,
        "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
    ]
    if args.events:
        cmd.append("--task-events")
    return subprocess.Popen(cmd, env=env, cwd=HERE, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_worker(proc):
    """Warm shutdown of the worker we started (by its process group), then a hard stop."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_ready(app, proc, deadline_s=60):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("celery worker exited: " + proc.stderr.read().decode(errors="replace"))
        if app.control.ping(timeout=0.5):
            return
    raise SystemExit("celery worker not ready within %d s" % deadline_s)


def run(args):
    import redis

    app, noop = make_app(args)
    flush(args)
    worker = start_worker(args)
    try:
        wait_ready(app, worker)
        results = redis.Redis.from_url(redis_url(args.redis_url, args.result_db))
        latencies = []
        first = datetime.now(timezone.utc)
        for i in range(args.jobs):
            t0 = time.perf_counter_ns()
            noop.delay(i)
            latencies.append(time.perf_counter_ns() - t0)
        enqueued = datetime.now(timezone.utc)
        deadline = time.monotonic() + args.timeout
        while results.dbsize() < args.jobs:
            if time.monotonic() > deadline:
                raise SystemExit("timed out: %d of %d done" % (results.dbsize(), args.jobs))
            if worker.poll() is not None:
                raise SystemExit("celery worker died")
            time.sleep(0.05)
        last = None
        keys = list(results.scan_iter(match="celery-task-meta-*", count=5000))
        for start in range(0, len(keys), 5000):
            for raw in results.mget(keys[start:start + 5000]):
                done = app.backend.decode_result(raw)["date_done"]
                if isinstance(done, str):
                    done = datetime.fromisoformat(done)
                if done.tzinfo is None:
                    done = done.replace(tzinfo=timezone.utc)
                last = done if last is None or done > last else last
    finally:
        stop_worker(worker)
        flush(args)
    seconds = (last - first).total_seconds()
    latencies.sort()
    ms = lambda ns: round(ns / 1e6, 4)
    print(json.dumps({
        "system": "celery",
        "celery": __import__("celery").__version__,
        "jobs": args.jobs,
        "jobs_per_second": round(args.jobs / seconds, 1),
        "seconds": round(seconds, 3),
        "enqueue_seconds": round((enqueued - first).total_seconds(), 3),
        "enqueue_p50_ms": ms(percentile(latencies, 0.50)),
        "enqueue_p99_ms": ms(percentile(latencies, 0.99)),
        "prefetch": args.prefetch,
        "concurrency": args.concurrency,
        "events": args.events,
    }))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--prefetch", type=int, default=1, help="worker_prefetch_multiplier (seed: 1)")
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument("--broker-db", type=int, default=14)
    p.add_argument("--result-db", type=int, default=15)
    p.add_argument("--no-events", dest="events", action="store_false",
                   help="do not send task events (the seed sends them)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for completion")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.prefetch < 1 or args.concurrency < 1:
        p.error("--jobs, --prefetch and --concurrency must be at least 1")
    if args.broker_db == args.result_db:
        p.error("--broker-db and --result-db must differ (the result database is counted)")
    return args


# The worker process imports this module as `celery_noop` and finds the app here, built with
# the client's settings.
if os.environ.get("CELERY_BENCH_ARGS") and __name__ != "__main__":
    worker_app, _ = make_app(argparse.Namespace(**json.loads(os.environ["CELERY_BENCH_ARGS"])))


if __name__ == "__main__":
    ensure_venv()
    run(parse_args(sys.argv[1:]))
