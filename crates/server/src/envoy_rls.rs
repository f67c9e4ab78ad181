//! Envoy's global rate-limit service: gRPC `envoy.service.ratelimit.v3.RateLimitService` /
//! `ShouldRateLimit`, answered by the same [`RateLimiter`] as the HTTP middleware, so an Envoy
//! proxy's `envoy.filters.http.ratelimit` filter enforces signalbox's rules (and a request
//! counted by one is counted by the other).
//!
//! ```text
//! Envoy ──ShouldRateLimit{domain, descriptors[]}──► domain check ─► each descriptor ─► RequestFacts
//!       ◄──{overall_code, statuses[], ratelimit headers}── Verdict per descriptor ◄─ RateLimiter::check
//! ```
//!
//! Each descriptor is one decision: its entries (`tenant`, `tier`, `user`, `remote_address` or
//! `ip`, `api_key`, `path`, `method`) become the [`RequestFacts`] of one check, charged with the
//! descriptor's `hits_addend`, else the request's, where 0 means 1 (Envoy's rule). Every
//! descriptor is validated before any is charged, so a malformed request costs nothing. The
//! format, the unit mapping and the Envoy configuration are in `docs/limits.md` ("Envoy").
//!
//! The messages are written by hand with prost's derives (no `protoc`, no build script) and
//! mirror Envoy's `envoy/service/ratelimit/v3/rls.proto`; the tests decode and encode bytes
//! made by Envoy's published Python protos (`xds-protos`) to hold the field numbers to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use limits::{Outcome, RequestFacts, RuleStatus, Tier, Verdict};

use crate::rate_limit::RateLimiter;

/// The domain answered when none is configured (`--rate-limit-grpc-domain`).
pub const DEFAULT_DOMAIN: &str = "signalbox";

/// The gRPC service name, as Envoy's `rate_limit_service` calls it.
pub const SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// The HTTP/2 path of `ShouldRateLimit`.
pub const SHOULD_RATE_LIMIT_PATH: &str =
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// Most descriptors one request may carry. Envoy sends one per matching `rate_limits` action
/// list, rarely more than a handful; the cap bounds the work one call can ask for.
pub const MAX_DESCRIPTORS: usize = 64;

/// Longest entry key or value, in bytes. Identifiers longer than this are not identifiers, and
/// every value may become a limiter key held in memory.
pub const MAX_ENTRY_BYTES: usize = 256;

/// Largest request message accepted. 64 descriptors of eight 256-byte entries fit in well
/// under this; tonic's default (4 MiB) would let a caller make the server buffer far more.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The descriptor entry keys understood, in documentation order.
pub const DESCRIPTOR_KEYS: [&str; 8] = [
    "tenant",
    "tier",
    "user",
    "remote_address",
    "ip",
    "api_key",
    "path",
    "method",
];

/// The messages of `envoy/service/ratelimit/v3/rls.proto` and the few they use from
/// `envoy/extensions/common/ratelimit/v3`, `envoy/config/core/v3`, `envoy/type/v3` and the
/// protobuf well-known types, with Envoy's field numbers and types.
///
/// Left out: `RateLimitResponse.dynamic_metadata` (6, a `google.protobuf.Struct`), which
/// signalbox never sets; a message carrying it still decodes (prost skips unknown fields).
pub mod proto {
    /// `envoy.service.ratelimit.v3.RateLimitRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitRequest {
        /// Which configuration to apply; must equal the configured domain.
        #[prost(string, tag = "1")]
        pub domain: String,
        /// One decision each.
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<RateLimitDescriptor>,
        /// Units each descriptor costs; 0 (unset) means 1.
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }

    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitDescriptor {
        /// The key/value pairs describing the request.
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
        /// A quota override from Envoy's configuration; signalbox ignores it (its rules file
        /// sets the quotas).
        #[prost(message, optional, tag = "2")]
        pub limit: Option<RateLimitOverride>,
        /// This descriptor's cost, replacing the request's `hits_addend`.
        #[prost(message, optional, tag = "3")]
        pub hits_addend: Option<UInt64Value>,
    }

    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        /// The entry's key.
        #[prost(string, tag = "1")]
        pub key: String,
        /// The entry's value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitOverride {
        /// Requests per unit.
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        /// `envoy.type.v3.RateLimitUnit`.
        #[prost(enumeration = "RateLimitUnit", tag = "2")]
        pub unit: i32,
    }

    /// `envoy.type.v3.RateLimitUnit` (the override's unit; unlike [`Unit`] it has no `WEEK`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum RateLimitUnit {
        /// Unknown.
        Unknown = 0,
        /// Per second.
        Second = 1,
        /// Per minute.
        Minute = 2,
        /// Per hour.
        Hour = 3,
        /// Per day.
        Day = 4,
        /// Per month.
        Month = 5,
        /// Per year.
        Year = 6,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitResponse {
        /// [`Code::OverLimit`] if any descriptor is over its limit, else [`Code::Ok`].
        #[prost(enumeration = "Code", tag = "1")]
        pub overall_code: i32,
        /// One per request descriptor, in order.
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<DescriptorStatus>,
        /// Headers Envoy adds to the response to the client.
        #[prost(message, repeated, tag = "3")]
        pub response_headers_to_add: Vec<HeaderValue>,
        /// Headers Envoy adds to the request to the upstream.
        #[prost(message, repeated, tag = "4")]
        pub request_headers_to_add: Vec<HeaderValue>,
        /// A body for Envoy's over-limit response.
        #[prost(bytes = "vec", tag = "5")]
        pub raw_body: Vec<u8>,
        /// A quota assignment (unused by signalbox).
        #[prost(message, optional, tag = "7")]
        pub quota: Option<Quota>,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse.Code`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Code {
        /// Not decided.
        Unknown = 0,
        /// Under the limit.
        Ok = 1,
        /// Over the limit: Envoy answers 429.
        OverLimit = 2,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimit {
        /// Requests (cost units) per unit.
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        /// The unit.
        #[prost(enumeration = "Unit", tag = "2")]
        pub unit: i32,
        /// The rule's name.
        #[prost(string, tag = "3")]
        pub name: String,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Unit {
        /// Unknown.
        Unknown = 0,
        /// Per second.
        Second = 1,
        /// Per minute.
        Minute = 2,
        /// Per hour.
        Hour = 3,
        /// Per day.
        Day = 4,
        /// Per month.
        Month = 5,
        /// Per year.
        Year = 6,
        /// Per week.
        Week = 7,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorStatus {
        /// The descriptor's decision.
        #[prost(enumeration = "Code", tag = "1")]
        pub code: i32,
        /// The rule that decided (or the closest to refusing, when allowed).
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        /// Units left under that rule.
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        /// Time until that rule's full quota is back.
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<Duration>,
        /// A quota assignment (unused by signalbox).
        #[prost(message, optional, tag = "5")]
        pub quota: Option<Quota>,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse.Quota`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quota {
        /// Requests granted.
        #[prost(uint32, tag = "1")]
        pub requests: u32,
        /// The quota's id.
        #[prost(string, tag = "3")]
        pub id: String,
        /// `oneof expiration_specifier`.
        #[prost(oneof = "QuotaExpiration", tags = "2")]
        pub expiration_specifier: Option<QuotaExpiration>,
    }

    /// `Quota.expiration_specifier`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum QuotaExpiration {
        /// When the quota expires.
        #[prost(message, tag = "2")]
        ValidUntil(Timestamp),
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        /// Header name.
        #[prost(string, tag = "1")]
        pub key: String,
        /// Header value.
        #[prost(string, tag = "2")]
        pub value: String,
        /// Header value as bytes (takes precedence over `value` in Envoy).
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Duration {
        /// Whole seconds.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds past `seconds`.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Timestamp {
        /// Seconds since the Unix epoch.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds past `seconds`.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `google.protobuf.UInt64Value`.
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct UInt64Value {
        /// The value.
        #[prost(uint64, tag = "1")]
        pub value: u64,
    }
}

use proto::{Code, DescriptorStatus, RateLimitRequest, RateLimitResponse, Unit};

/// A `ShouldRateLimit` request that cannot be decided. Each maps to a gRPC status
/// ([`RequestError::code`]); the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request names another domain (`NOT_FOUND`).
    #[error(
        "unknown rate-limit domain {got:?}: this service answers domain {expected:?} \
         (--rate-limit-grpc-domain)"
    )]
    UnknownDomain {
        /// The request's domain.
        got: String,
        /// The configured one.
        expected: String,
    },
    /// No descriptors (`INVALID_ARGUMENT`).
    #[error("the request has no descriptors; send at least one")]
    NoDescriptors,
    /// More than [`MAX_DESCRIPTORS`] (`INVALID_ARGUMENT`).
    #[error("the request has {count} descriptors; at most {MAX_DESCRIPTORS} are accepted")]
    TooManyDescriptors {
        /// How many were sent.
        count: usize,
    },
    /// A descriptor without entries (`INVALID_ARGUMENT`).
    #[error("descriptor {descriptor} has no entries")]
    NoEntries {
        /// The descriptor's index.
        descriptor: usize,
    },
    /// An entry key or value longer than [`MAX_ENTRY_BYTES`] (`INVALID_ARGUMENT`).
    #[error(
        "descriptor {descriptor}: entry {entry}'s {what} is {len} bytes; keys and values are at \
         most {MAX_ENTRY_BYTES} bytes"
    )]
    EntryTooLong {
        /// The descriptor's index.
        descriptor: usize,
        /// The entry's index.
        entry: usize,
        /// `key` or `value`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A key outside [`DESCRIPTOR_KEYS`] (`INVALID_ARGUMENT`).
    #[error(
        "descriptor {descriptor}: unknown entry key {key:?}; known keys: {}",
        DESCRIPTOR_KEYS.join(", ")
    )]
    UnknownKey {
        /// The descriptor's index.
        descriptor: usize,
        /// The key.
        key: String,
    },
    /// Two entries setting the same fact, such as `remote_address` and `ip`
    /// (`INVALID_ARGUMENT`).
    #[error("descriptor {descriptor}: entry {key:?} sets the {fact} a second time")]
    DuplicateKey {
        /// The descriptor's index.
        descriptor: usize,
        /// The second entry's key.
        key: String,
        /// What it sets.
        fact: &'static str,
    },
    /// An identifier entry with an empty value (`INVALID_ARGUMENT`).
    #[error("descriptor {descriptor}: entry {key:?} has an empty value")]
    EmptyValue {
        /// The descriptor's index.
        descriptor: usize,
        /// The key.
        key: String,
    },
    /// A `tier` that is not one of [`Tier::ALL`] (`INVALID_ARGUMENT`).
    #[error(
        "descriptor {descriptor}: unknown tier {value:?}; expected one of {}",
        Tier::ALL.map(Tier::as_str).join(", ")
    )]
    UnknownTier {
        /// The descriptor's index.
        descriptor: usize,
        /// The value sent.
        value: String,
    },
}

impl RequestError {
    /// The gRPC status code Envoy receives.
    pub fn code(&self) -> tonic::Code {
        match self {
            RequestError::UnknownDomain { .. } => tonic::Code::NotFound,
            _ => tonic::Code::InvalidArgument,
        }
    }
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// The gRPC server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("Envoy rate-limit service: {0}")]
pub struct ServeError(#[from] tonic::transport::Error);

/// One descriptor's facts, owned; [`Self::facts`] lends them to the limiter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DescriptorFacts {
    tenant: Option<String>,
    user: Option<String>,
    ip: Option<String>,
    api_key: Option<String>,
    tier: Option<Tier>,
    method: String,
    path: String,
    cost: u64,
}

impl DescriptorFacts {
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            tenant: self.tenant.as_deref(),
            user: self.user.as_deref(),
            ip: self.ip.as_deref(),
            api_key: self.api_key.as_deref(),
            tier: self.tier,
            method: &self.method,
            path: &self.path,
            cost: Some(self.cost),
        }
    }
}

/// Envoy's rule for `hits_addend`: the descriptor's if set, else the request's; 0 means 1
/// (proto3 cannot tell an unset request-level value from 0, and Envoy treats both as 1).
fn cost(descriptor: Option<u64>, request: u32) -> u64 {
    match descriptor.unwrap_or(u64::from(request)) {
        0 => 1,
        n => n,
    }
}

fn descriptor_facts(
    index: usize,
    descriptor: &proto::RateLimitDescriptor,
    request_hits: u32,
) -> Result<DescriptorFacts, RequestError> {
    if descriptor.entries.is_empty() {
        return Err(RequestError::NoEntries { descriptor: index });
    }
    let mut facts = DescriptorFacts {
        cost: cost(descriptor.hits_addend.map(|h| h.value), request_hits),
        ..DescriptorFacts::default()
    };
    let (mut has_method, mut has_path) = (false, false);
    for (entry_index, entry) in descriptor.entries.iter().enumerate() {
        for (what, len) in [("key", entry.key.len()), ("value", entry.value.len())] {
            if len > MAX_ENTRY_BYTES {
                return Err(RequestError::EntryTooLong {
                    descriptor: index,
                    entry: entry_index,
                    what,
                    len,
                });
            }
        }
        let key = entry.key.as_str();
        let value = entry.value.as_str();
        let duplicate = |fact| RequestError::DuplicateKey {
            descriptor: index,
            key: key.to_owned(),
            fact,
        };
        // An empty identifier would make every such request share one limiter key.
        let identifier = || {
            if value.is_empty() {
                Err(RequestError::EmptyValue {
                    descriptor: index,
                    key: key.to_owned(),
                })
            } else {
                Ok(value.to_owned())
            }
        };
        match key {
            "tenant" => set_once(&mut facts.tenant, identifier()?, || duplicate("tenant"))?,
            "user" => set_once(&mut facts.user, identifier()?, || duplicate("user"))?,
            "api_key" => set_once(&mut facts.api_key, identifier()?, || duplicate("API key"))?,
            "remote_address" | "ip" => {
                let ip = canonical_ip(&identifier()?);
                set_once(&mut facts.ip, ip, || duplicate("client address"))?;
            }
            "tier" => {
                let tier = Tier::ALL
                    .into_iter()
                    .find(|t| t.as_str() == value)
                    .ok_or_else(|| RequestError::UnknownTier {
                        descriptor: index,
                        value: value.to_owned(),
                    })?;
                set_once(&mut facts.tier, tier, || duplicate("tier"))?;
            }
            "method" => {
                if std::mem::replace(&mut has_method, true) {
                    return Err(duplicate("method"));
                }
                // Rules name methods in upper case, as the HTTP middleware sees them.
                facts.method = value.to_ascii_uppercase();
            }
            "path" => {
                if std::mem::replace(&mut has_path, true) {
                    return Err(duplicate("path"));
                }
                // Envoy's `:path` carries the query; the rules' globs match the path alone.
                facts.path = value.split('?').next().unwrap_or_default().to_owned();
            }
            _ => {
                return Err(RequestError::UnknownKey {
                    descriptor: index,
                    key: key.to_owned(),
                })
            }
        }
    }
    Ok(facts)
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    duplicate: impl FnOnce() -> RequestError,
) -> Result<(), RequestError> {
    if slot.is_some() {
        return Err(duplicate());
    }
    *slot = Some(value);
    Ok(())
}

/// The address as the HTTP middleware writes it (`IpAddr`'s display form, an IPv4-mapped IPv6
/// address as IPv4), so a client counted
/// through Envoy and directly shares one key; a value that is not an address is kept as sent.
fn canonical_ip(value: &str) -> String {
    value
        .parse::<std::net::IpAddr>()
        .map_or_else(|_| value.to_owned(), |ip| ip.to_canonical().to_string())
}

/// A quota per window as Envoy's `requests_per_unit` and `unit`: the largest of DAY, HOUR,
/// MINUTE, SECOND whose length divides the window, when the quota divides evenly over the
/// window's units (100 per 3600 s is 100 per HOUR, 120 per 7200 s is 60 per HOUR); otherwise
/// SECOND with the quota divided by the window, rounded down (5 per 7200 s is 0 per SECOND),
/// since Envoy's units cannot express the rest. Saturates at `u32::MAX`.
///
/// ```
/// use server::envoy_rls::{per_unit, proto::Unit};
/// assert_eq!(per_unit(100, 60), (100, Unit::Minute));
/// assert_eq!(per_unit(120, 7200), (60, Unit::Hour));
/// assert_eq!(per_unit(10, 90), (0, Unit::Second));
/// ```
pub fn per_unit(quota: u64, window_secs: u64) -> (u32, Unit) {
    const UNITS: [(Unit, u64); 4] = [
        (Unit::Day, 86_400),
        (Unit::Hour, 3_600),
        (Unit::Minute, 60),
        (Unit::Second, 1),
    ];
    let saturate = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    if window_secs == 0 {
        // Not a valid rule (windows are nonzero); say what was configured rather than divide.
        return (saturate(quota), Unit::Second);
    }
    // SECOND divides every window, so a unit is always found. A smaller unit never divides
    // evenly where a larger one did not (its window count is a multiple), so one try suffices.
    let (unit, secs) = UNITS
        .into_iter()
        .find(|(_, secs)| window_secs.is_multiple_of(*secs))
        .unwrap_or((Unit::Second, 1));
    let windows = window_secs / secs;
    if quota.is_multiple_of(windows) {
        (saturate(quota / windows), unit)
    } else {
        (saturate(quota / window_secs), Unit::Second)
    }
}

fn duration(ns: u64) -> proto::Duration {
    proto::Duration {
        seconds: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
        // Below 10^9, so it fits.
        nanos: i32::try_from(ns % 1_000_000_000).unwrap_or(0),
    }
}

/// Whether Envoy should refuse: every outcome that does not serve the request now counts,
/// since Envoy can neither wait nor queue; `degrade` serves (a cheaper answer), so it is OK.
fn over_limit(verdict: &Verdict) -> bool {
    match verdict.outcome {
        Outcome::Allow | Outcome::Degrade => false,
        Outcome::Delay { .. } | Outcome::Queue { .. } | Outcome::Reject { .. } => true,
    }
}

fn descriptor_status(verdict: &Verdict) -> DescriptorStatus {
    let over = over_limit(verdict);
    let rule = verdict
        .decided_by
        .as_ref()
        .and_then(|name| verdict.rules.iter().find(|r| r.name == *name))
        .or_else(|| verdict.most_restrictive());
    DescriptorStatus {
        code: if over { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: rule.map(|r| {
            let (requests_per_unit, unit) = per_unit(r.quota, r.window_secs);
            proto::RateLimit {
                requests_per_unit,
                unit: unit as i32,
                name: r.name.to_string(),
            }
        }),
        limit_remaining: rule.map_or(0, |r| u32::try_from(r.remaining).unwrap_or(u32::MAX)),
        duration_until_reset: rule.map(|r| duration(r.reset_after_ns)),
        quota: None,
    }
}

/// The IETF `RateLimit-Policy` / `RateLimit` fields over every descriptor's enforcing rules, as
/// the HTTP middleware writes them; a rule seen in several descriptors is reported where it
/// has the least left.
fn ratelimit_headers(verdicts: &[Verdict]) -> Vec<proto::HeaderValue> {
    let mut rules: Vec<&RuleStatus> = Vec::new();
    for rule in verdicts.iter().flat_map(|v| &v.rules).filter(|r| !r.shadow) {
        match rules.iter_mut().find(|seen| seen.name == rule.name) {
            Some(seen) if rule.remaining < seen.remaining => *seen = rule,
            Some(_) => {}
            None => rules.push(rule),
        }
    }
    let header = |key: &str, value: String| proto::HeaderValue {
        key: key.to_owned(),
        value,
        raw_value: Vec::new(),
    };
    let mut headers = Vec::new();
    if let Some((policy, state)) = crate::rate_limit::field_values(rules) {
        headers.push(header("ratelimit-policy", policy));
        headers.push(header("ratelimit", state));
    }
    if let Some(secs) = retry_after_secs(verdicts) {
        headers.push(header("retry-after", secs.to_string()));
    }
    headers
}

/// `Retry-After` of an `OVER_LIMIT` answer, as the HTTP API sends it on a 429: whole seconds,
/// rounded up, until every refused descriptor would be admitted (the longest wait). `None`
/// when nothing was refused, or when a refused request could never be admitted.
fn retry_after_secs(verdicts: &[Verdict]) -> Option<u64> {
    let mut longest: Option<u64> = None;
    for verdict in verdicts.iter().filter(|v| over_limit(v)) {
        let wait_ns = match verdict.outcome {
            Outcome::Reject { retry_after_ns } => retry_after_ns,
            Outcome::Delay { wait_ns } | Outcome::Queue { wait_ns, .. } => wait_ns,
            Outcome::Allow | Outcome::Degrade => 0,
        };
        if wait_ns == limits::NEVER {
            return None;
        }
        longest = Some(longest.unwrap_or(0).max(wait_ns));
    }
    longest.map(|ns| ns.div_ceil(1_000_000_000))
}

/// `RateLimitService` over one [`RateLimiter`]: a `tower::Service` for tonic's transport
/// server, and [`Self::should_rate_limit`] for calling it directly.
#[derive(Clone)]
pub struct RateLimitService {
    limiter: Arc<RateLimiter>,
    domain: Arc<str>,
}

impl RateLimitService {
    /// Answers requests for `domain` with `limiter`.
    pub fn new(limiter: Arc<RateLimiter>, domain: impl Into<Arc<str>>) -> RateLimitService {
        RateLimitService {
            limiter,
            domain: domain.into(),
        }
    }

    /// The domain answered.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Decides every descriptor of `request`, in order, each charging the rules it applies to.
    /// Nothing is charged when the request is refused as malformed.
    pub async fn should_rate_limit(
        &self,
        request: &RateLimitRequest,
    ) -> Result<RateLimitResponse, RequestError> {
        if request.domain != *self.domain {
            return Err(RequestError::UnknownDomain {
                got: request.domain.clone(),
                expected: self.domain.to_string(),
            });
        }
        match request.descriptors.len() {
            0 => return Err(RequestError::NoDescriptors),
            count if count > MAX_DESCRIPTORS => {
                return Err(RequestError::TooManyDescriptors { count })
            }
            _ => {}
        }
        let all_facts = request
            .descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| descriptor_facts(i, d, request.hits_addend))
            .collect::<Result<Vec<_>, _>>()?;
        let mut verdicts = Vec::with_capacity(all_facts.len());
        for facts in &all_facts {
            verdicts.push(self.limiter.check(&facts.facts()).await);
        }
        let statuses: Vec<DescriptorStatus> = verdicts.iter().map(descriptor_status).collect();
        let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
        Ok(RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            response_headers_to_add: ratelimit_headers(&verdicts),
            ..RateLimitResponse::default()
        })
    }
}

impl tonic::server::NamedService for RateLimitService {
    const NAME: &'static str = SERVICE_NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<tonic::body::Body>> for RateLimitService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != SHOULD_RATE_LIMIT_PATH {
            let status = tonic::Status::unimplemented(format!(
                "no method {}; this server has only {SHOULD_RATE_LIMIT_PATH}",
                request.uri().path()
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let service = self.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<RateLimitResponse, RateLimitRequest>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).max_decoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.unary(ShouldRateLimit(service), request).await)
        })
    }
}

/// The unary method, as tonic's `Grpc::unary` calls it.
struct ShouldRateLimit(RateLimitService);

impl tonic::server::UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Result<tonic::Response<RateLimitResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            match service.should_rate_limit(request.get_ref()).await {
                Ok(response) => Ok(tonic::Response::new(response)),
                Err(e) => {
                    // Debug, not warn: a misconfigured Envoy sends every request this way, and
                    // Envoy itself counts and logs the failed calls.
                    tracing::debug!(error = %e, "Envoy rate-limit request refused");
                    Err(e.into())
                }
            }
        })
    }
}

/// Serves `ShouldRateLimit` for `domain` on `listener` with `limiter` until `shutdown`
/// resolves; then stops accepting, lets calls in flight finish and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limiter: Arc<RateLimiter>,
    domain: String,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    // Small request/response pairs on long-lived connections: without TCP_NODELAY, Nagle and
    // delayed ACKs can add tens of milliseconds to a call Envoy makes on every request.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(RateLimitService::new(limiter, domain), incoming, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;
    use prost::Message as _;

    /// A limiter over `rules` (TOML), in memory.
    fn limiter(rules: &str) -> Arc<RateLimiter> {
        let config = limits::Config::parse("test.toml", rules).expect("test rules parse");
        let settings = crate::RateLimitSettings {
            config: Some(config),
            ..crate::RateLimitSettings::default()
        };
        let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
        Arc::new(
            RateLimiter::new(&settings, metrics)
                .expect("limiter")
                .expect("rate limits on"),
        )
    }

    const RULES: &str = r#"
[[rule]]
name = "per_user"
scope = "user"
algorithm = "fixed_window"
limit = 5
window_secs = 3600
action = { kind = "reject" }

[[rule]]
name = "per_tenant"
scope = "tenant"
algorithm = "fixed_window"
limit = 100
window_secs = 60
action = { kind = "reject" }

[rule.tiers]
free = { limit = 3 }

[[rule]]
name = "posts"
scope = "ip"
algorithm = "fixed_window"
limit = 2
window_secs = 60
methods = ["POST"]
action = { kind = "reject" }

[[rule]]
name = "reports"
scope = "api_key"
algorithm = "fixed_window"
limit = 1
window_secs = 60
paths = ["/reports/*"]
action = { kind = "degrade" }

[[rule]]
name = "queued"
scope = "api_key"
algorithm = "fixed_window"
limit = 1
window_secs = 60
paths = ["/queued"]
action = { kind = "queue", max_queued = 10, max_wait_ms = 3600000 }
"#;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries.iter().map(|(k, v)| entry(k, v)).collect(),
            ..RateLimitDescriptor::default()
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: DEFAULT_DOMAIN.to_owned(),
            descriptors,
            hits_addend: 0,
        }
    }

    fn service(rules: &str) -> RateLimitService {
        RateLimitService::new(limiter(rules), DEFAULT_DOMAIN)
    }

    fn limit(status: &DescriptorStatus) -> (u32, Unit, &str) {
        let l = status.current_limit.as_ref().expect("a current limit");
        (
            l.requests_per_unit,
            Unit::try_from(l.unit).expect("a known unit"),
            &l.name,
        )
    }

    #[test]
    fn units_are_the_largest_that_divide_window_and_quota() {
        assert_eq!(per_unit(100, 60), (100, Unit::Minute));
        assert_eq!(per_unit(5, 3600), (5, Unit::Hour));
        assert_eq!(per_unit(48, 172_800), (24, Unit::Day));
        assert_eq!(per_unit(1000, 86_400), (1000, Unit::Day));
        assert_eq!(per_unit(120, 7200), (60, Unit::Hour));
        assert_eq!(per_unit(90, 120), (45, Unit::Minute));
        assert_eq!(per_unit(7, 1), (7, Unit::Second));
        // 100 per 90 s: MINUTE does not divide 90 s; per SECOND, rounded down.
        assert_eq!(per_unit(100, 90), (1, Unit::Second));
        // 5 per 7200 s: HOUR divides the window but 5 is not a whole number per hour.
        assert_eq!(per_unit(5, 7200), (0, Unit::Second));
        assert_eq!(per_unit(u64::MAX, 1), (u32::MAX, Unit::Second));
    }

    #[test]
    fn hits_addend_of_the_descriptor_wins_and_zero_means_one() {
        assert_eq!(cost(None, 0), 1);
        assert_eq!(cost(None, 4), 4);
        assert_eq!(cost(Some(2), 4), 2);
        assert_eq!(cost(Some(0), 4), 1);
    }

    #[test]
    fn entries_map_to_request_facts() {
        let d = descriptor(&[
            ("tenant", "t1"),
            ("tier", "business"),
            ("user", "u1"),
            ("remote_address", "::FFFF:10.0.0.1"),
            ("api_key", "k1"),
            ("path", "/api/v1/x?limit=3"),
            ("method", "post"),
        ]);
        let facts = descriptor_facts(0, &d, 3).unwrap();
        assert_eq!(
            facts,
            DescriptorFacts {
                tenant: Some("t1".into()),
                user: Some("u1".into()),
                // IPv4-mapped IPv6 is written as IPv4, as the HTTP side's client address is.
                ip: Some("10.0.0.1".into()),
                api_key: Some("k1".into()),
                tier: Some(Tier::Business),
                method: "POST".into(),
                path: "/api/v1/x".into(),
                cost: 3,
            }
        );
        let facts = descriptor_facts(0, &descriptor(&[("ip", "10.0.0.2")]), 0).unwrap();
        assert_eq!(facts.ip.as_deref(), Some("10.0.0.2"));
        assert_eq!((facts.method.as_str(), facts.path.as_str()), ("", ""));
        assert_eq!(facts.cost, 1);
    }

    #[test]
    fn malformed_descriptors_are_refused_with_what_to_fix() {
        let err =
            |entries: &[(&str, &str)]| descriptor_facts(2, &descriptor(entries), 0).unwrap_err();
        let e = err(&[("user", "u"), ("colour", "red")]);
        assert_eq!(
            e,
            RequestError::UnknownKey {
                descriptor: 2,
                key: "colour".into()
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("\"colour\"") && msg.contains("remote_address"),
            "{msg}"
        );
        let msg = err(&[("tier", "gold")]).to_string();
        assert!(
            msg.contains("\"gold\"") && msg.contains("free, starter"),
            "{msg}"
        );
        assert!(matches!(
            err(&[("remote_address", "1.2.3.4"), ("ip", "1.2.3.4")]),
            RequestError::DuplicateKey {
                fact: "client address",
                ..
            }
        ));
        assert!(matches!(
            err(&[("method", "GET"), ("method", "POST")]),
            RequestError::DuplicateKey { fact: "method", .. }
        ));
        assert!(matches!(
            err(&[("user", "")]),
            RequestError::EmptyValue { .. }
        ));
        assert_eq!(err(&[]), RequestError::NoEntries { descriptor: 2 });
        let long = "x".repeat(MAX_ENTRY_BYTES + 1);
        assert_eq!(
            err(&[("user", "u"), ("user", &long)]),
            RequestError::EntryTooLong {
                descriptor: 2,
                entry: 1,
                what: "value",
                len: MAX_ENTRY_BYTES + 1
            }
        );
        assert!(matches!(
            err(&[(&long, "v")]),
            RequestError::EntryTooLong { what: "key", .. }
        ));
        // At the limit is fine.
        let at = "x".repeat(MAX_ENTRY_BYTES);
        assert!(descriptor_facts(0, &descriptor(&[("user", &at)]), 0).is_ok());
    }

    #[tokio::test]
    async fn requests_are_checked_for_domain_and_size_before_anything_is_charged() {
        let svc = service(RULES);
        let mut req = request(vec![descriptor(&[("user", "u")])]);
        req.domain = "other".into();
        let e = svc.should_rate_limit(&req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.to_string().contains("\"other\"") && e.to_string().contains("\"signalbox\""));

        let e = svc.should_rate_limit(&request(vec![])).await.unwrap_err();
        assert_eq!(
            (e.code(), e),
            (tonic::Code::InvalidArgument, RequestError::NoDescriptors)
        );
        let many = vec![descriptor(&[("user", "u")]); MAX_DESCRIPTORS + 1];
        let e = svc.should_rate_limit(&request(many)).await.unwrap_err();
        assert_eq!(
            e,
            RequestError::TooManyDescriptors {
                count: MAX_DESCRIPTORS + 1
            }
        );

        // A valid descriptor before a malformed one is not charged.
        let req = request(vec![
            descriptor(&[("user", "u")]),
            descriptor(&[("bad", "x")]),
        ]);
        assert!(svc.should_rate_limit(&req).await.is_err());
        let ok = svc
            .should_rate_limit(&request(vec![descriptor(&[("user", "u")])]))
            .await
            .unwrap();
        assert_eq!(ok.statuses[0].limit_remaining, 4);
    }

    #[tokio::test]
    async fn a_descriptor_is_ok_until_its_limit_is_spent() {
        let svc = service(RULES);
        let user = |hits: u64| RateLimitDescriptor {
            hits_addend: Some(UInt64Value { value: hits }),
            ..descriptor(&[("user", "alice")])
        };
        let r = svc
            .should_rate_limit(&request(vec![user(2)]))
            .await
            .unwrap();
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(limit(&r.statuses[0]), (5, Unit::Hour, "per_user"));
        assert_eq!(r.statuses[0].limit_remaining, 3);
        let reset = r.statuses[0].duration_until_reset.unwrap();
        assert!(reset.seconds > 3500 && reset.seconds <= 3600, "{reset:?}");
        let headers: Vec<_> = r
            .response_headers_to_add
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(headers[0], ("ratelimit-policy", "\"per_user\";q=5;w=3600"));
        assert_eq!(headers[1].0, "ratelimit");
        assert!(
            headers[1].1.starts_with("\"per_user\";r=3;t="),
            "{headers:?}"
        );
        assert!(
            headers.iter().all(|(k, _)| *k != "retry-after"),
            "an OK answer has no Retry-After: {headers:?}"
        );

        let r = svc
            .should_rate_limit(&request(vec![user(3)]))
            .await
            .unwrap();
        assert_eq!(
            (r.statuses[0].code, r.statuses[0].limit_remaining),
            (Code::Ok as i32, 0)
        );
        let r = svc
            .should_rate_limit(&request(vec![user(1)]))
            .await
            .unwrap();
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(limit(&r.statuses[0]), (5, Unit::Hour, "per_user"));
        assert!(r.statuses[0].duration_until_reset.unwrap().seconds > 0);
        // Retry-After, as the HTTP API's 429 carries it: whole seconds, rounded up.
        let retry: u64 = r
            .response_headers_to_add
            .iter()
            .find(|h| h.key == "retry-after")
            .map(|h| h.value.parse().unwrap())
            .unwrap_or_else(|| panic!("no retry-after in {:?}", r.response_headers_to_add));
        assert!((3500..=3600).contains(&retry), "{retry}");

        // Another user has their own quota; the overall code is over if any descriptor is.
        let r = svc
            .should_rate_limit(&request(vec![descriptor(&[("user", "bob")]), user(1)]))
            .await
            .unwrap();
        let codes: Vec<_> = r.statuses.iter().map(|s| s.code).collect();
        assert_eq!(codes, [Code::Ok as i32, Code::OverLimit as i32]);
        assert_eq!(r.overall_code, Code::OverLimit as i32);
    }

    #[tokio::test]
    async fn tier_method_and_path_select_quotas_and_rules() {
        let svc = service(RULES);
        // The free tier's tenant quota (3 per minute) replaces the rule's 100.
        let d = descriptor(&[("tenant", "t"), ("tier", "free")]);
        let r = svc.should_rate_limit(&request(vec![d])).await.unwrap();
        assert_eq!(limit(&r.statuses[0]), (3, Unit::Minute, "per_tenant"));
        assert_eq!(r.statuses[0].limit_remaining, 2);
        // No entry for any rule's scope: OK, with no current limit.
        let d = descriptor(&[("path", "/nothing")]);
        let r = svc.should_rate_limit(&request(vec![d])).await.unwrap();
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(r.statuses[0].current_limit, None);
        assert!(r.response_headers_to_add.is_empty());
        // `posts` applies to POST only; the method is upper-cased, and absent means none.
        let ip = |method: Option<&str>| match method {
            Some(m) => descriptor(&[("ip", "10.1.1.1"), ("method", m)]),
            None => descriptor(&[("ip", "10.1.1.1")]),
        };
        let r = svc
            .should_rate_limit(&request(vec![ip(None)]))
            .await
            .unwrap();
        assert_eq!(r.statuses[0].current_limit, None);
        for remaining in [1, 0] {
            let r = svc
                .should_rate_limit(&request(vec![ip(Some("post"))]))
                .await
                .unwrap();
            assert_eq!(limit(&r.statuses[0]).2, "posts");
            assert_eq!(r.statuses[0].limit_remaining, remaining);
        }
        let r = svc
            .should_rate_limit(&request(vec![ip(Some("POST"))]))
            .await
            .unwrap();
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        // Path rules need a path; `degrade` stays OK when refused, `queue` is over the limit.
        let key = |path: &str| descriptor(&[("api_key", "k"), ("path", path)]);
        let r = svc
            .should_rate_limit(&request(vec![descriptor(&[("api_key", "k")])]))
            .await
            .unwrap();
        assert_eq!(r.statuses[0].current_limit, None);
        for _ in 0..2 {
            let r = svc
                .should_rate_limit(&request(vec![key("/reports/a")]))
                .await
                .unwrap();
            assert_eq!(r.statuses[0].code, Code::Ok as i32);
            assert_eq!(limit(&r.statuses[0]).2, "reports");
        }
        svc.should_rate_limit(&request(vec![key("/queued")]))
            .await
            .unwrap();
        let r = svc
            .should_rate_limit(&request(vec![key("/queued")]))
            .await
            .unwrap();
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(limit(&r.statuses[0]).2, "queued");
    }

    /// Made by Envoy's published Python protos (xds-protos 1.85.0):
    /// a RateLimitRequest(domain="signalbox", hits_addend=3) with descriptors
    /// [{user=u1, tier=free; limit {7, MINUTE}; hits_addend 9}, {remote_address=10.0.0.1}].
    const ENVOY_REQUEST: &str = "0a097369676e616c626f7812240a0a0a0475736572120275310a0c0a04746965721204667265651204080710021a020809121c0a1a0a0e72656d6f74655f61646472657373120831302e302e302e311803";
    /// A RateLimitResponse(overall_code=OVER_LIMIT, raw_body=b"no", quota{requests=1}) with
    /// statuses [{OVER_LIMIT, {5, HOUR, "per_user"}, remaining 4, reset 12 s 500 ns,
    /// quota{2, valid_until 100 s, id "q"}}, {OK}], response header ratelimit:
    /// "per_user";r=4;t=13 and request header x-a: b.
    const ENVOY_RESPONSE: &str = "080212260802120e080510031a087065725f7573657218042205080c10f4032a090802120208641a0171120208011a200a09726174656c696d69741213227065725f75736572223b723d343b743d313322080a03782d611201622a026e6f3a020801";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn messages_match_envoys_published_protos() {
        let request = RateLimitRequest::decode(hex(ENVOY_REQUEST).as_slice()).unwrap();
        assert_eq!(
            request,
            RateLimitRequest {
                domain: "signalbox".into(),
                descriptors: vec![
                    RateLimitDescriptor {
                        entries: vec![entry("user", "u1"), entry("tier", "free")],
                        limit: Some(RateLimitOverride {
                            requests_per_unit: 7,
                            unit: RateLimitUnit::Minute as i32
                        }),
                        hits_addend: Some(UInt64Value { value: 9 }),
                    },
                    descriptor(&[("remote_address", "10.0.0.1")]),
                ],
                hits_addend: 3,
            }
        );
        assert_eq!(request.encode_to_vec(), hex(ENVOY_REQUEST));

        let header = |k: &str, v: &str| HeaderValue {
            key: k.into(),
            value: v.into(),
            raw_value: Vec::new(),
        };
        let response = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![
                DescriptorStatus {
                    code: Code::OverLimit as i32,
                    current_limit: Some(RateLimit {
                        requests_per_unit: 5,
                        unit: Unit::Hour as i32,
                        name: "per_user".into(),
                    }),
                    limit_remaining: 4,
                    duration_until_reset: Some(proto::Duration {
                        seconds: 12,
                        nanos: 500,
                    }),
                    quota: Some(Quota {
                        requests: 2,
                        id: "q".into(),
                        expiration_specifier: Some(QuotaExpiration::ValidUntil(Timestamp {
                            seconds: 100,
                            nanos: 0,
                        })),
                    }),
                },
                DescriptorStatus {
                    code: Code::Ok as i32,
                    ..DescriptorStatus::default()
                },
            ],
            response_headers_to_add: vec![header("ratelimit", "\"per_user\";r=4;t=13")],
            request_headers_to_add: vec![header("x-a", "b")],
            raw_body: b"no".to_vec(),
            quota: Some(Quota {
                requests: 1,
                ..Quota::default()
            }),
        };
        assert_eq!(response.encode_to_vec(), hex(ENVOY_RESPONSE));
        assert_eq!(
            RateLimitResponse::decode(hex(ENVOY_RESPONSE).as_slice()).unwrap(),
            response
        );
    }

    /// Through the `tower::Service` that tonic's server runs: gRPC framing in, status and
    /// message out, and UNIMPLEMENTED for other paths.
    #[tokio::test]
    async fn the_grpc_service_frames_requests_and_statuses() {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;

        let grpc_call = |path: &str, message: &RateLimitRequest| {
            let payload = message.encode_to_vec();
            let mut body = vec![0u8];
            body.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
            body.extend_from_slice(&payload);
            http::Request::builder()
                .method("POST")
                .uri(format!("http://localhost{path}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(tonic::body::Body::new(http_body_util::Full::new(
                    bytes::Bytes::from(body),
                )))
                .unwrap()
        };
        let svc = service(RULES);

        let ok = request(vec![descriptor(&[("user", "carol")])]);
        let response = svc
            .clone()
            .oneshot(grpc_call(SHOULD_RATE_LIMIT_PATH, &ok))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        let bytes = collected.to_bytes();
        let reply = RateLimitResponse::decode(&bytes[5..]).unwrap();
        assert_eq!(reply.statuses[0].limit_remaining, 4);

        let bad = request(vec![descriptor(&[("colour", "red")])]);
        let response = svc
            .clone()
            .oneshot(grpc_call(SHOULD_RATE_LIMIT_PATH, &bad))
            .await
            .unwrap();
        // An error before any message is a trailers-only response: the status is in the headers.
        assert_eq!(response.headers().get("grpc-status").unwrap(), "3");
        let message = response
            .headers()
            .get("grpc-message")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(message.contains("colour"), "{message}");

        let path = "/envoy.service.ratelimit.v3.RateLimitService/Other";
        let response = svc.oneshot(grpc_call(path, &ok)).await.unwrap();
        assert_eq!(response.headers().get("grpc-status").unwrap(), "12");
    }
}
