#!/usr/bin/env python3
"""Writes fifty_flags.json: the 50-flag set behind the OFREP bulk load test (docs/flags.md, Speed).

Ten flags of each type, each targeting one to five rules over the usual attributes, a third
with a prerequisite on an earlier flag, so a bulk evaluation exercises every code path a real
environment would. Deterministic: no randomness, so the file only changes when this script does.
"""
import json
import pathlib

TYPES = ["boolean", "percentage", "multivariate", "targeting", "operational"]
CONDITIONS = [
    {"attribute": "tier", "op": "in", "values": ["pro", "enterprise"]},
    {"attribute": "email", "op": "ends_with", "value": "@example.com", "case_insensitive": True},
    {"attribute": "app_version", "op": "semver_gt", "value": "2.3.0"},
    {"attribute": "seats", "op": "gte", "value": 50},
    {"attribute": "device", "op": "regex", "value": "^(ios|android)-"},
]


def flag(i: int) -> dict:
    kind = TYPES[i % len(TYPES)]
    key = f"flag-{i:02d}-{kind}"
    on_off = [{"key": "on", "value": True}, {"key": "off", "value": False}]
    f = {"key": key, "type": kind, "status": "active", "owner": "bench", "tags": ["bench"]}
    if kind in ("boolean", "operational", "targeting"):
        f.update(variants=on_off, default_variant="off", off_variant="off")
    elif kind == "percentage":
        f.update(
            variants=[{"key": "on", "value": True, "weight_bp": 10000}, {"key": "off", "value": False}],
            default_variant="off", off_variant="off", rollout_bp=500 * (1 + i % 20),
        )
    else:
        f.update(
            variants=[
                {"key": "control", "value": {"layout": "classic", "n": i}, "weight_bp": 5000, "control": True},
                {"key": "a", "value": {"layout": "compact", "n": i}, "weight_bp": 2500},
                {"key": "b", "value": {"layout": "cards", "n": i}, "weight_bp": 2500},
            ],
            default_variant="control", off_variant="control",
        )
    rules = 1 + i % 5
    target = "on" if kind != "multivariate" else "a"
    f["rules"] = [
        {"id": f"r{r}", "when": CONDITIONS[(i + r) % len(CONDITIONS)], "variant": target}
        for r in range(rules)
    ]
    if i % 3 == 2:
        f["prerequisites"] = [{"flag": flag_key(i - 1), "variants": variants(i - 1)}]
    return f


def flag_key(i: int) -> str:
    return f"flag-{i:02d}-{TYPES[i % len(TYPES)]}"


def variants(i: int) -> list:
    return ["control", "a", "b"] if TYPES[i % len(TYPES)] == "multivariate" else ["on", "off"]


if __name__ == "__main__":
    out = pathlib.Path(__file__).with_name("fifty_flags.json")
    out.write_text(json.dumps([flag(i) for i in range(50)], indent=2) + "\n")
    print(f"wrote {out}")
