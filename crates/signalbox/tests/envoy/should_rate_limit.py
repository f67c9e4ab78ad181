"""Envoy's rate-limit protocol, spoken by a client not written here.

Calls signalbox's `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` with Envoy's own
published protos (the `xds-protos` package, versions pinned in requirements.txt) over grpcio,
as Envoy's `envoy.filters.http.ratelimit` filter does, and checks the answers against the rules
that tests/envoy_rls.rs gives the server (docs/limits.md, "Envoy"):

    per_user    fixed_window, scope user,   5 per 3600 s       -> 5 per HOUR
    per_tenant  fixed_window, scope tenant, 600 per 60 s       -> 600 per MINUTE
                (tier free: 10 per 60 s                        -> 10 per MINUTE)

Usage: should_rate_limit.py GRPC_ADDR [--http HTTP_ADDR --key API_KEY] [--domain DOMAIN]

With --http, also checks that a request through signalbox's HTTP API and one through gRPC
count against the same quota (the HTTP request names its user in X-User-Id, so API_KEY must be
allowed to assert users: the `assert_user` or `admin` scope). Prints one line per check and a summary "N passed, M failed";
exits 1 if any check failed.
"""

import argparse
import sys
import urllib.error
import urllib.request
import uuid

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

Response = rls_pb2.RateLimitResponse
OK, OVER_LIMIT = Response.OK, Response.OVER_LIMIT
HOUR, MINUTE = Response.RateLimit.HOUR, Response.RateLimit.MINUTE
CODE_NAMES = {v: k for k, v in Response.Code.items()}
UNIT_NAMES = {v: k for k, v in Response.RateLimit.Unit.items()}

passed = 0
failed = 0


def check(name, body):
    """Runs one check: `body()` returns what differed (empty: passed); an exception, such as a
    gRPC error where an answer was expected, fails the check rather than the run."""
    global passed, failed
    try:
        problems = body()
    except grpc.RpcError as e:
        problems = [f"gRPC error {e.code().name}: {e.details()}"]
    except Exception as e:  # noqa: BLE001 - any failure is reported, and the rest still run
        problems = [f"{type(e).__name__}: {e}"]
    if problems:
        failed += 1
        print(f"FAIL {name}:")
        for p in problems:
            print(f"    {p}")
    else:
        passed += 1
        print(f"ok   {name}")


def same(problems, what, got, want):
    if got != want:
        problems.append(f"{what}: got {got!r}, want {want!r}")


def descriptor(entries, hits_addend=None):
    d = ratelimit_pb2.RateLimitDescriptor()
    for key, value in entries:
        d.entries.add(key=key, value=value)
    if hits_addend is not None:
        d.hits_addend.value = hits_addend
    return d


def describe(status):
    limit = status.current_limit
    return (
        f"{CODE_NAMES.get(status.code, status.code)}, "
        f"{limit.requests_per_unit}/{UNIT_NAMES.get(limit.unit, limit.unit)} {limit.name!r}, "
        f"remaining {status.limit_remaining}, reset {status.duration_until_reset.ToTimedelta()}"
    )


def expect_status(problems, status, code, limit, remaining):
    """`limit` is (requests_per_unit, unit, name), or None for no current limit."""
    same(problems, "code", CODE_NAMES.get(status.code, status.code), CODE_NAMES[code])
    if limit is None:
        same(problems, "has current_limit", status.HasField("current_limit"), False)
        return
    if not status.HasField("current_limit"):
        problems.append(f"no current_limit, want {limit}")
        return
    got = status.current_limit
    same(
        problems,
        "current_limit",
        (got.requests_per_unit, UNIT_NAMES.get(got.unit, got.unit), got.name),
        (limit[0], UNIT_NAMES[limit[1]], limit[2]),
    )
    same(problems, "limit_remaining", status.limit_remaining, remaining)
    reset = status.duration_until_reset
    if not status.HasField("duration_until_reset") or reset.ToNanoseconds() <= 0:
        problems.append(f"duration_until_reset: got {reset.ToTimedelta()}, want > 0")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("grpc_addr")
    parser.add_argument("--http", dest="http_addr")
    parser.add_argument("--key", dest="api_key")
    parser.add_argument("--domain", default="signalbox")
    args = parser.parse_args()

    channel = grpc.insecure_channel(args.grpc_addr)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    run = uuid.uuid4().hex[:8]

    def call(descriptors, hits_addend=0, domain=None):
        request = rls_pb2.RateLimitRequest(
            domain=args.domain if domain is None else domain,
            descriptors=descriptors,
            hits_addend=hits_addend,
        )
        return stub.ShouldRateLimit(request, timeout=10)

    def expect_error(code, must_mention, **kwargs):
        def body():
            try:
                response = call(**kwargs)
            except grpc.RpcError as e:
                problems = []
                same(problems, "gRPC status", e.code(), code)
                for word in must_mention:
                    if word not in (e.details() or ""):
                        problems.append(f"message {e.details()!r} does not mention {word!r}")
                return problems
            return [f"answered {response}, want gRPC status {code.name}"]

        return body

    per_user = (5, HOUR, "per_user")
    alice = [("user", f"alice-{run}")]

    def one(descriptors, hits_addend, overall, code, limit, remaining):
        def body():
            problems = []
            response = call(descriptors, hits_addend=hits_addend)
            same(problems, "overall_code", CODE_NAMES.get(response.overall_code), overall)
            if len(response.statuses) != 1:
                return problems + [f"{len(response.statuses)} statuses, want 1"]
            expect_status(problems, response.statuses[0], code, limit, remaining)
            return problems

        return body

    # Spend the user's 5 per hour: 1, then 2 (the request's hits_addend), then 1 (the
    # descriptor's hits_addend, replacing the request's 3), then 1.
    for name, descriptors, hits, remaining in [
        ("a first hit", [descriptor(alice)], 0, 4),
        ("request hits_addend=2", [descriptor(alice)], 2, 2),
        ("descriptor hits_addend=1 wins over the request's 3", [descriptor(alice, 1)], 3, 1),
        ("the last unit", [descriptor(alice)], 0, 0),
    ]:
        check(
            f"under the limit: {name} -> OK, remaining {remaining}",
            one(descriptors, hits, "OK", OK, per_user, remaining),
        )

    def spent():
        problems = []
        response = call([descriptor(alice)])
        same(problems, "overall_code", CODE_NAMES.get(response.overall_code), "OVER_LIMIT")
        expect_status(problems, response.statuses[0], OVER_LIMIT, per_user, 0)
        headers = {h.key: h.value for h in response.response_headers_to_add}
        same(problems, "ratelimit-policy", headers.get("ratelimit-policy"), '"per_user";q=5;w=3600')
        if not headers.get("ratelimit", "").startswith('"per_user";r=0;t='):
            problems.append(f"ratelimit header: got {headers.get('ratelimit')!r}")
        # Retry-After as the HTTP API's 429 has it: whole seconds (rounded up) until the
        # fixed window of 3600 s ends.
        retry = headers.get("retry-after", "")
        if not (retry.isdigit() and 1 <= int(retry) <= 3600):
            problems.append(f"retry-after header: got {retry!r}, want 1..3600 seconds")
        return problems

    check(
        "the limit spent: OVER_LIMIT, duration_until_reset > 0, RateLimit and Retry-After "
        "headers to add",
        spent,
    )

    def no_retry_after_when_ok():
        response = call([descriptor([("user", f"carol-{run}")])])
        headers = {h.key: h.value for h in response.response_headers_to_add}
        if "retry-after" in headers:
            return [f"an OK answer carries retry-after {headers['retry-after']!r}"]
        return []

    check("an OK answer: no Retry-After", no_retry_after_when_ok)

    def two():
        problems = []
        response = call([descriptor([("user", f"bob-{run}")]), descriptor(alice)])
        same(problems, "overall_code", CODE_NAMES.get(response.overall_code), "OVER_LIMIT")
        if len(response.statuses) != 2:
            return problems + [f"{len(response.statuses)} statuses, want 2"]
        expect_status(problems, response.statuses[0], OK, per_user, 4)
        expect_status(problems, response.statuses[1], OVER_LIMIT, per_user, 0)
        return problems

    check("two descriptors, one over: overall OVER_LIMIT, statuses [OK, OVER_LIMIT]", two)
    check(
        "a tenant: 600 per MINUTE",
        one([descriptor([("tenant", f"t-{run}")])], 0, "OK", OK, (600, MINUTE, "per_tenant"), 599),
    )
    check(
        "a free-tier tenant: the tier's 10 per MINUTE",
        one(
            [descriptor([("tenant", f"free-{run}"), ("tier", "free")])],
            0, "OK", OK, (10, MINUTE, "per_tenant"), 9,
        ),
    )
    check(
        "no rule applies: OK without current_limit",
        one([descriptor([("path", "/api/v1/x"), ("method", "get")])], 0, "OK", OK, None, 0),
    )
    check(
        "an unknown domain: NOT_FOUND naming both domains",
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            ["elsewhere", args.domain],
            descriptors=[descriptor(alice)],
            domain="elsewhere",
        ),
    )
    check(
        "an unknown entry key: INVALID_ARGUMENT naming it and the known keys",
        expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            ["header_match", "remote_address"],
            descriptors=[descriptor([("header_match", "x")])],
        ),
    )
    check(
        "an unknown tier: INVALID_ARGUMENT naming it",
        expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            ["gold"],
            descriptors=[descriptor([("tenant", "t"), ("tier", "gold")])],
        ),
    )
    check(
        "no descriptors: INVALID_ARGUMENT",
        expect_error(grpc.StatusCode.INVALID_ARGUMENT, ["descriptor"], descriptors=[]),
    )

    if args.http_addr:

        def shared_quota():
            # One request through the HTTP API (every path is limited; this one answers 404),
            # then one through gRPC: the gRPC answer must count both.
            shared = f"shared-{run}"
            problems = []
            request = urllib.request.Request(
                f"http://{args.http_addr}/api/v1/envoy-shared-quota",
                headers={"X-User-Id": shared, "Authorization": f"Bearer {args.api_key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    headers = r.headers
            except urllib.error.HTTPError as e:
                headers = e.headers
            field = headers.get("RateLimit", "")
            if '"per_user";r=4;' not in field:
                problems.append(f'HTTP RateLimit field: got {field!r}, want "per_user";r=4;...')
            response = call([descriptor([("user", shared)])])
            expect_status(problems, response.statuses[0], OK, per_user, 3)
            return problems

        check("HTTP and gRPC share one quota", shared_quota)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
