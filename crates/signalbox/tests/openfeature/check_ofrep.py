"""OpenFeature conformance: a third-party client evaluates signalbox's flags over OFREP.

Uses the OpenFeature Python SDK and its OFREP provider, unchanged (versions pinned in
requirements.txt), against a running `signalbox serve` whose `production` environment holds the
flags of flags.json (next to this file, or SIGNALBOX_FLAGS_FILE). Environment:

    SIGNALBOX_URL      base URL of the server, e.g. http://127.0.0.1:8080
    SIGNALBOX_API_KEY  an API key of the tenant holding the flags (read scope is enough)

Expected values, variants and reasons are derived from the flag file and the documented
evaluation and bucketing rules (docs/flags.md; MurmurHash3 is reimplemented below and checked
against the published test vectors), not copied from the server. The rule-level rollout's
expectations use the `mmh3` package instead, an implementation independent of both. Exits 0 when every check
passes, 1 with one line per mismatch otherwise.
"""

import json
import os
import sys
from pathlib import Path

import mmh3
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

BUCKETS = 10_000
USERS = [f"user-{i}" for i in range(40)]


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32, unsigned, as docs/flags.md specifies for bucketing."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    h = seed
    body = len(data) // 4 * 4
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = rotl((k * c1) & mask, 15) * c2 & mask
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
    tail = data[body:]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= rotl((k * c1) & mask, 15) * c2 & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def bucket(text: str) -> int:
    return murmur3_x86_32(text.encode("utf-8")) % BUCKETS


class Checker:
    def __init__(self, flags_by_key):
        self.flags = flags_by_key
        self.failures = []
        self.checks = 0

    def fail(self, what: str, message: str):
        self.failures.append(f"{what}: {message}")

    def variant_value(self, flag_key: str, variant: str):
        for v in self.flags[flag_key]["variants"]:
            if v["key"] == variant:
                return v["value"]
        raise KeyError(f"flag {flag_key!r} in the flag file has no variant {variant!r}")

    def expect(self, what, details, *, value, variant, reason, error_code=None, metadata=None):
        """Compares FlagEvaluationDetails with the expectation, recording each difference."""
        self.checks += 1
        got = {
            "value": details.value,
            "variant": details.variant,
            "reason": details.reason,
            "error_code": details.error_code,
        }
        want = {
            "value": value,
            "variant": variant,
            "reason": reason,
            "error_code": error_code,
        }
        for field, expected in want.items():
            actual = got[field]
            # bool is an int in Python: compare types too, so True never passes for 1.
            if actual != expected or type(actual) is not type(expected):
                self.fail(
                    what,
                    f"{field} is {actual!r}, expected {expected!r}"
                    f" (error message: {details.error_message!r})",
                )
        for field, expected in (metadata or {}).items():
            actual = details.flag_metadata.get(field)
            if actual != expected:
                self.fail(what, f"metadata.{field} is {actual!r}, expected {expected!r}")

    def expect_split(self, what, details, flag_key: str, targeting_key: str):
        """The documented rollout and split: in the rollout iff bucket < rollout_bp, then the
        variant whose contiguous weight range holds the split bucket."""
        flag = self.flags[flag_key]
        b = bucket(f"{flag_key}:{targeting_key}")
        if b >= flag.get("rollout_bp", BUCKETS):
            variant, reason = flag["default_variant"], Reason.DEFAULT
        else:
            split = bucket(f"{flag_key}/split:{targeting_key}")
            end, variant = 0, None
            for v in flag["variants"]:
                end += v.get("weight_bp", 0)
                if split < end:
                    variant = v["key"]
                    break
            reason = Reason.SPLIT
        self.expect(
            what,
            details,
            value=self.variant_value(flag_key, variant),
            variant=variant,
            reason=reason,
            metadata={"bucket": b},
        )
        return variant, reason


def mmh3_bucket(text: str) -> int:
    return mmh3.hash(text, 0, signed=False) % BUCKETS


def expect_rule_split(c, what, details, flag_key: str, targeting_key: str):
    """A rule's split (docs/flags.md, Rule-level rollouts): the matched user is in the rule's
    rollout iff the flag's bucket < the rule's rollout_bp, then gets the variant whose range of
    the rule's weights holds the split bucket; outside, the default variant. Both report the
    rule and the bucket."""
    flag = c.flags[flag_key]
    (rule,) = [r for r in flag["rules"] if "split" in r]
    split = rule["split"]
    b = mmh3_bucket(f"{flag_key}:{targeting_key}")
    if b >= split.get("rollout_bp", BUCKETS):
        variant, reason = flag["default_variant"], Reason.DEFAULT
    else:
        s = mmh3_bucket(f"{flag_key}/split:{targeting_key}")
        end, variant = 0, None
        for v in split["variants"]:
            end += v["weight_bp"]
            if s < end:
                variant = v["variant"]
                break
        reason = Reason.SPLIT
    c.expect(
        what,
        details,
        value=c.variant_value(flag_key, variant),
        variant=variant,
        reason=reason,
        metadata={"bucket": b, "rule": rule["id"]},
    )
    return variant, reason


def client_for(url: str, key: str, environment: str | None = None, domain: str = "default"):
    headers = {"Authorization": f"Bearer {key}"}
    if environment is not None:
        headers["X-Environment"] = environment
    api.set_provider(OFREPProvider(url, headers_factory=lambda: dict(headers)), domain)
    return api.get_client(domain)


def main() -> int:
    # The published vectors (docs/flags.md): this implementation must agree before it judges.
    for text, expected in [("new-checkout:user-42", 1499260774), ("flag.with.dots:ключ", 472939668)]:
        got = murmur3_x86_32(text.encode("utf-8"))
        if got != expected or mmh3.hash(text, 0, signed=False) != expected:
            print(f"murmur3({text!r}) = {got}, expected {expected}: the checker is broken")
            return 1

    try:
        url = os.environ["SIGNALBOX_URL"]
        key = os.environ["SIGNALBOX_API_KEY"]
    except KeyError as missing:
        print(f"set {missing.args[0]}")
        return 2
    flags_file = Path(
        os.environ.get("SIGNALBOX_FLAGS_FILE", Path(__file__).with_name("flags.json"))
    )
    flags = {f["key"]: f for f in json.loads(flags_file.read_text())}
    c = Checker(flags)
    # X-Environment is sent explicitly for production (the server's default too).
    client = client_for(url, key, "production")
    ctx = EvaluationContext

    # Boolean: a rule match, the default, a static flag, a killed flag, a rollout.
    staff = ctx("ann", {"email": "ann@example.com"})
    c.expect(
        "boolean new-dashboard, staff",
        client.get_boolean_details("new-dashboard", False, staff),
        value=True, variant="on", reason=Reason.TARGETING_MATCH, metadata={"rule": "staff"},
    )
    c.expect(
        "boolean new-dashboard, customer",
        client.get_boolean_details("new-dashboard", True, ctx("bob", {"email": "bob@example.org"})),
        value=False, variant="off", reason=Reason.DEFAULT,
    )
    c.expect(
        "boolean maintenance-banner",
        client.get_boolean_details("maintenance-banner", True, ctx("bob")),
        value=False, variant="hidden", reason=Reason.STATIC,
    )
    c.expect(
        "boolean legacy-export, kill switch on",
        client.get_boolean_details("legacy-export", True, staff),
        value=False, variant="off", reason=Reason.DISABLED,
    )
    reasons = set()
    for user in USERS:
        _, reason = c.expect_split(
            f"boolean half-rollout, {user}",
            client.get_boolean_details("half-rollout", False, ctx(user)),
            "half-rollout", user,
        )
        reasons.add(reason)
    if reasons != {Reason.SPLIT, Reason.DEFAULT}:
        c.fail("boolean half-rollout", f"{len(USERS)} users should fall both in and out of a 50% rollout, saw {reasons}")

    # String (multivariate): the split, a rule pinning a variant, and a missing targeting key.
    seen = set()
    for user in USERS:
        variant, _ = c.expect_split(
            f"string checkout-button, {user}",
            client.get_string_details("checkout-button", "none", ctx(user)),
            "checkout-button", user,
        )
        seen.add(variant)
    if len(seen) < 3:
        c.fail("string checkout-button", f"{len(USERS)} users should see all three variants, saw {seen}")
    c.expect(
        "string checkout-button, beta tester",
        client.get_string_details("checkout-button", "none", ctx("user-1", {"segment": "beta"})),
        value="#cf222e", variant="red", reason=Reason.TARGETING_MATCH, metadata={"rule": "beta"},
    )
    c.expect(
        "string checkout-button, no targeting key",
        client.get_string_details("checkout-button", "none", ctx(None, {"segment": "staff"})),
        value="none", variant=None, reason=Reason.ERROR,
        error_code=ErrorCode.TARGETING_KEY_MISSING,
    )

    # Numbers: an integer and a float flag, matched and not.
    c.expect(
        "integer max-items, pro",
        client.get_integer_details("max-items", 1, ctx("ann", {"tier": "pro"})),
        value=50, variant="large", reason=Reason.TARGETING_MATCH, metadata={"rule": "paid"},
    )
    c.expect(
        "integer max-items, free",
        client.get_integer_details("max-items", 1, ctx("bob", {"tier": "free"})),
        value=10, variant="small", reason=Reason.DEFAULT,
    )
    c.expect(
        "float discount-rate, eu-west",
        client.get_float_details("discount-rate", 0.0, ctx("ann", {"region": "eu-west"})),
        value=0.15, variant="eu", reason=Reason.TARGETING_MATCH, metadata={"rule": "eu-regions"},
    )
    c.expect(
        "float discount-rate, us-east",
        client.get_float_details("discount-rate", 0.0, ctx("bob", {"region": "us-east"})),
        value=0.05, variant="standard", reason=Reason.DEFAULT,
    )

    # Object (multivariate).
    seen = set()
    for user in USERS:
        variant, _ = c.expect_split(
            f"object theme, {user}",
            client.get_object_details("theme", {}, ctx(user)),
            "theme", user,
        )
        seen.add(variant)
    if len(seen) < 2:
        c.fail("object theme", f"{len(USERS)} users should see both variants, saw {seen}")

    # A rule-level rollout: 10 % of EU professional users, split 50/50 by the rule's weights.
    seen = {}
    for i in range(300):
        user = f"user-{i}"
        variant, reason = expect_rule_split(
            c,
            f"string eu-pro-pricing, {user}",
            client.get_string_details("eu-pro-pricing", "none", ctx(user, {"region": "eu", "tier": "pro"})),
            "eu-pro-pricing", user,
        )
        seen[(variant, reason)] = seen.get((variant, reason), 0) + 1
    wanted = {("annual", Reason.SPLIT), ("monthly", Reason.SPLIT), ("list", Reason.DEFAULT)}
    if set(seen) != wanted:
        c.fail("string eu-pro-pricing", f"300 EU professional users should see {wanted}, saw {seen}")
    c.expect(
        "string eu-pro-pricing, outside the EU",
        client.get_string_details("eu-pro-pricing", "none", ctx("user-1", {"region": "us", "tier": "pro"})),
        value="list-price", variant="list", reason=Reason.DEFAULT,
    )
    # An environment override: one value for everyone in production, before the rules, with
    # no variant.
    c.expect(
        "string search-backend, beta tester",
        client.get_string_details("search-backend", "none", ctx("ann", {"segment": "beta"})),
        value="maintenance-index", variant=None, reason=Reason.STATIC,
        metadata={"environment_override": "production"},
    )

    # A missing flag: the caller's default, with FLAG_NOT_FOUND.
    c.expect(
        "boolean no-such-flag",
        client.get_boolean_details("no-such-flag", True, staff),
        value=True, variant=None, reason=Reason.ERROR, error_code=ErrorCode.FLAG_NOT_FOUND,
    )
    c.expect(
        "object no-such-flag",
        client.get_object_details("no-such-flag", {"fallback": True}, staff),
        value={"fallback": True}, variant=None, reason=Reason.ERROR,
        error_code=ErrorCode.FLAG_NOT_FOUND,
    )
    # Environments are separate: the flags were imported into production only.
    staging = client_for(url, key, "staging", domain="staging")
    c.expect(
        "boolean new-dashboard in staging",
        staging.get_boolean_details("new-dashboard", False, staff),
        value=False, variant=None, reason=Reason.ERROR, error_code=ErrorCode.FLAG_NOT_FOUND,
    )
    # A wrong key is refused (401): the default, with an error.
    intruder = client_for(url, "sbx_not_a_key", domain="intruder")
    c.expect(
        "boolean new-dashboard with a wrong key",
        intruder.get_boolean_details("new-dashboard", False, staff),
        value=False, variant=None, reason=Reason.ERROR, error_code=ErrorCode.GENERAL,
    )

    api.shutdown()
    if c.failures:
        for line in c.failures:
            print(f"MISMATCH {line}")
        print(f"{len(c.failures)} mismatch(es) in {c.checks} evaluations")
        return 1
    print(f"ok: {c.checks} evaluations through openfeature-sdk with the OFREP provider matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
