//! HTTP caching: strong ETags computed from the body, `304 Not Modified` for `If-None-Match`, a
//! `Cache-Control` policy per route, `Vary`, and response compression.
//!
//! Three layers, which `app()` stacks inside the [envelope](crate::envelope), innermost first:
//!
//! 1. [`etag`] sees what the handler produced, before any compression: for GET and HEAD 200s
//!    without an ETag it hashes the identity body (up to [`MAX_HASHED_BODY`]) into one.
//! 2. [`compression`], tower-http's `CompressionLayer` (gzip, br, zstd, from
//!    [`MIN_COMPRESSED_BODY`] bytes; never event streams, images, gRPC or errors).
//! 3. [`conditional`] sees the final representation: it renames the ETag of a body the
//!    compression layer encoded (`"<hash>-gzip"`), answers 304 when `If-None-Match` names it, and
//!    sets `Cache-Control` ([`cache_control`]) and `Vary`.
//!
//! Why the ETag changes with the encoding: a strong ETag promises byte-identical content (RFC
//! 9110 §8.8.3), and the gzip, br, zstd and identity representations of one answer are different
//! bytes, so each gets its own tag. The hash is always of the identity bytes, and the encoding is
//! a suffix, so `"abc"`, `"abc-gzip"` and `"abc-br"` name the variants of one answer. Handlers
//! only know the tags they issued, so [`conditional`] strips these suffixes from `If-None-Match`
//! and `If-Match` before the request reaches them (a flag's `If-Match: "3-gzip"` means version 3).
//! The 304 decision for GET and HEAD is made after compression, against the tag the client would
//! get now; the compressed body is never polled then, so a 304 costs no compression.

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use sha2::{Digest, Sha256};
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// The largest body hashed into an ETag. Bigger bodies (and streams that grow past it) pass
/// through whole, without an ETag: buffering them would hold that much memory per request.
pub const MAX_HASHED_BODY: usize = 8 * 1024 * 1024;

/// The smallest body compressed, in bytes. Below it the framing overhead of gzip, br or zstd
/// eats most of the saving, and the CPU is spent for nothing.
pub const MIN_COMPRESSED_BODY: u16 = 500;

/// The content codings the compression layer produces, as they appear in `Content-Encoding` and
/// as ETag suffixes. An ETag a handler issues must not end in `-<coding>` (none does: they are
/// version numbers and hex hashes).
const CODINGS: [&str; 3] = ["gzip", "br", "zstd"];

const EVENT_STREAM: &str = "text/event-stream";

/// Marks a response that left [`etag`] without a `Content-Encoding`, so [`conditional`] can tell
/// an encoding the compression layer added (a new representation, which needs its own ETag) from
/// one a handler set itself (whose ETag already names the encoded bytes).
#[derive(Clone, Copy, Debug)]
struct Unencoded;

/// Gives GET and HEAD 200 responses that have no ETag a strong one: the first 16 bytes of the
/// body's SHA-256, in hex, quoted. Event streams and bodies known to be larger than
/// [`MAX_HASHED_BODY`] pass through unread; a body of unknown length that grows past it is handed
/// on whole, without an ETag. Runs inside [`compression`], so it hashes the identity
/// representation.
pub(crate) async fn etag(req: Request, next: Next) -> Response {
    let readable = is_read(req.method());
    let mut response = next.run(req).await;
    if !response.headers().contains_key(header::CONTENT_ENCODING) {
        response.extensions_mut().insert(Unencoded);
    }
    if !readable
        || response.status() != StatusCode::OK
        || response.headers().contains_key(header::ETAG)
        || is_event_stream(response.headers())
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    match buffer(body, MAX_HASHED_BODY).await {
        Buffered::Whole(bytes) => {
            // The value is quoted hex, always a valid header value; if it somehow were not, the
            // response simply goes without a validator.
            if let Ok(value) = HeaderValue::from_str(&hash_etag(&bytes)) {
                parts.headers.insert(header::ETAG, value);
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        Buffered::PassedOn(body) => Response::from_parts(parts, body),
    }
}

/// The strong ETag of a body: the first 16 bytes of its SHA-256, hex, in quotes. 128 bits keep
/// an accidental collision out of reach while the header stays short.
fn hash_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// A body read whole, or handed on unchanged (the frames read so far first) because it grew past
/// the bound, carried trailers or failed.
enum Buffered {
    Whole(Bytes),
    PassedOn(Body),
}

/// Reads `body` whole if it is at most `limit` bytes. Never loses any of it: a body found to be
/// larger is handed on with the frames already read replayed in front of the rest.
async fn buffer(mut body: Body, limit: usize) -> Buffered {
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    if body.size_hint().lower() > limit_u64 {
        return Buffered::PassedOn(body);
    }
    let mut frames = Vec::new();
    let mut len = 0usize;
    let stopped = loop {
        match body.frame().await {
            None => break None,
            Some(Ok(frame)) => {
                let data = frame.data_ref().map(Bytes::len);
                frames.push(frame);
                len = len.saturating_add(data.unwrap_or(0));
                // Trailers (which a whole body would drop) or past the bound: stream it on.
                if data.is_none() || len > limit {
                    break Some(Ok(()));
                }
            }
            Some(Err(error)) => break Some(Err(error)),
        }
    };
    if let Some(stopped) = stopped {
        let read = futures_util::stream::iter(frames.into_iter().map(Ok));
        let body = match stopped {
            Ok(()) => Body::new(StreamBody::new(read.chain(BodyStream::new(body)))),
            // Deliver what was read, then the same failure, as the handler's body would have.
            Err(error) => Body::new(StreamBody::new(
                read.chain(futures_util::stream::iter([Err(error)])),
            )),
        };
        return Buffered::PassedOn(body);
    }
    let mut chunks = frames.into_iter().filter_map(|f| f.into_data().ok());
    let whole = match (chunks.next(), chunks.next()) {
        (None, _) => Bytes::new(),
        // The usual case (a JSON body is one chunk): no copy.
        (Some(only), None) => only,
        (Some(first), Some(second)) => {
            let mut all = Vec::with_capacity(len);
            for chunk in [first, second].into_iter().chain(chunks) {
                all.extend_from_slice(&chunk);
            }
            Bytes::from(all)
        }
    };
    Buffered::Whole(whole)
}

/// tower-http's compression, negotiated from `Accept-Encoding` (gzip, br, zstd).
///
/// Not compressed: bodies under [`MIN_COMPRESSED_BODY`] bytes, gRPC, images (already
/// compressed), event streams (compression buffers, and an event must reach the client when it
/// happens) and error responses (the envelope rewrites error bodies into problem+json after this
/// layer, which would leave a plain body under a `Content-Encoding: gzip` header).
///
/// Level 4 for every coding: tower-http would otherwise use each library's default, and
/// brotli's (quality 11, its slowest) is meant for static files compressed once, not answers
/// made per request; at 4, gzip, br and zstd are all cheap next to the handler's work.
pub(crate) fn compression() -> CompressionLayer<impl Predicate> {
    let predicate = SizeAbove::new(MIN_COMPRESSED_BODY)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
        .and(NotForErrors);
    CompressionLayer::new()
        .no_deflate()
        .quality(CompressionLevel::Precise(4))
        .compress_when(predicate)
}

/// Refuses to compress 4xx and 5xx responses: see [`compression`].
#[derive(Clone, Copy, Debug)]
struct NotForErrors;

impl Predicate for NotForErrors {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        let status = response.status();
        !(status.is_client_error() || status.is_server_error())
    }
}

/// Finishes the caching headers of every response and answers `304 Not Modified`; runs outside
/// [`compression`], so it sees the representation the client will get.
///
/// - An ETag on a body the compression layer encoded gets the coding as a suffix
///   (`"abc"` → `"abc-gzip"`): a strong validator must differ between representations.
/// - `If-None-Match` and `If-Match` reach the handler with those suffixes stripped, so its own
///   checks (OFREP's bulk 304, a flag's `If-Match` version) work with the tag a client was given;
///   a 304 the handler makes echoes the tag the client sent.
/// - A GET or HEAD 200 with an ETag that `If-None-Match` names (weak comparison, a list or `*`,
///   RFC 9110 §13.1.2) becomes a bodiless 304 keeping ETag, Cache-Control and Vary.
/// - `Cache-Control` ([`cache_control`]) when the handler set none (event streams always), and
///   `Vary`.
pub(crate) async fn conditional(
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = matched.as_ref().map(MatchedPath::as_str);
    let if_none_match = IfNoneMatch::parse(req.headers());
    strip_coding_suffixes(req.headers_mut(), header::IF_NONE_MATCH);
    strip_coding_suffixes(req.headers_mut(), header::IF_MATCH);

    let mut response = next.run(req).await;
    name_encoded_representation(&mut response);
    if response.status() == StatusCode::NOT_MODIFIED {
        echo_client_tag(&mut response, if_none_match.as_ref());
    }
    // axum's `Sse` sets `no-cache` on every stream, which would still let a cache keep a
    // tenant's events; a stream's policy is this table's, not a handler default's.
    if !response.headers().contains_key(header::CACHE_CONTROL)
        || is_event_stream(response.headers())
    {
        let policy = cache_control(&method, response.status(), route, response.headers());
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    add_vary(response.headers_mut(), vary_for(route));

    let fresh = is_read(&method)
        && response.status() == StatusCode::OK
        && if_none_match.as_ref().is_some_and(|condition| {
            response
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .and_then(EntityTag::parse)
                .is_some_and(|etag| condition.matches(&etag))
        });
    if fresh {
        return not_modified(response);
    }
    response
}

/// The `Cache-Control` of a response whose handler set none (and of every event stream). The
/// first rule that applies wins:
///
/// | what | policy | why |
/// |---|---|---|
/// | not GET or HEAD | `no-store` | a write's answer describes one moment (and a 304 to OFREP's bulk POST is that client's own cache, not HTTP's) |
/// | 4xx, 5xx | `no-store` | errors are transient (a dependency down, a key not yet made) and carry the request's id; a cached one would replay a failure that is over |
/// | event stream | `no-store` | a live stream has nothing to reuse |
/// | `/health`, `/api/v1/health`, `/ready`, `/metrics` | `no-store` | their point is the state of the process now; a cached answer hides an outage or freezes a metric |
/// | `/openapi.json` | `public, max-age=300` | the same for every caller, and it changes only with a deploy; five minutes bounds how long a new route stays unseen |
/// | `/forecast`, `/api/v1/forecast*` | `private, max-age=60` | answers change only when the model or the hour moves (the server keeps them for minutes too), so a minute of reuse saves requests; private because they belong to the caller's key |
/// | any other tenant GET | `private, no-cache` | tenant data (flags, profiles, keys) may change at any moment: a client may keep it, never a shared cache, and revalidates each use with the ETag, so a change shows on the next request and no change costs a 304 |
pub(crate) fn cache_control(
    method: &Method,
    status: StatusCode,
    route: Option<&str>,
    headers: &HeaderMap,
) -> &'static str {
    const NO_STORE: &str = "no-store";
    if !is_read(method) || status.is_client_error() || status.is_server_error() {
        return NO_STORE;
    }
    if is_event_stream(headers) {
        return NO_STORE;
    }
    match route {
        Some("/health" | "/api/v1/health" | "/ready" | "/metrics") => NO_STORE,
        Some("/openapi.json") => "public, max-age=300",
        Some(r) if r == "/forecast" || r.starts_with("/api/v1/forecast") => "private, max-age=60",
        Some(_) => "private, no-cache",
        // Only the fallback matches no route, and it answers 404 (caught above); a success there
        // would be something new, so keep it out of caches until it has a policy.
        None => NO_STORE,
    }
}

/// Whether a route answers without a tenant (the same for every caller).
fn is_platform(route: &str) -> bool {
    matches!(
        route,
        "/health" | "/api/v1/health" | "/ready" | "/metrics" | "/openapi.json"
    )
}

/// The request headers a route's answer depends on, besides its URL. Every answer may be
/// compressed; tenant answers depend on the key; flag routes also on `X-Environment`.
fn vary_for(route: Option<&str>) -> &'static [&'static str] {
    match route {
        None => &["Accept-Encoding"],
        Some(r) if is_platform(r) => &["Accept-Encoding"],
        Some(r) if r.starts_with("/api/v1/flags") => {
            &["Authorization", "Accept-Encoding", "X-Environment"]
        }
        Some(_) => &["Authorization", "Accept-Encoding"],
    }
}

/// Adds each of `wanted` to `Vary` unless it is there already (the compression layer adds
/// `accept-encoding` to what it compresses), leaving one `Vary` line.
fn add_vary(headers: &mut HeaderMap, wanted: &[&str]) {
    let present: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if present.iter().any(|t| t == "*") {
        return;
    }
    let mut tokens: Vec<String> = wanted.iter().map(|&t| t.to_owned()).collect();
    for token in present {
        if !tokens.iter().any(|t| t.eq_ignore_ascii_case(&token)) {
            tokens.push(token);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&tokens.join(", ")) {
        headers.insert(header::VARY, value);
    }
}

/// Gives the ETag of a body the compression layer encoded the coding as a suffix.
fn name_encoded_representation(response: &mut Response) {
    if response.extensions().get::<Unencoded>().is_none() {
        return;
    }
    let headers = response.headers();
    let Some(coding) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|c| CODINGS.contains(c))
    else {
        return;
    };
    let Some(etag) = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(EntityTag::parse)
    else {
        return;
    };
    // A weak tag already allows representations that are not byte-identical.
    if etag.weak {
        return;
    }
    let renamed = format!("\"{}-{coding}\"", etag.opaque);
    if let Ok(value) = HeaderValue::from_str(&renamed) {
        response.headers_mut().insert(header::ETAG, value);
    }
}

/// A 304 the handler made carries the tag it knows (`"abc"`); when the client asked with an
/// encoded variant's tag (`"abc-gzip"`), that is the stored response the 304 refreshes, so
/// answer with the client's tag.
fn echo_client_tag(response: &mut Response, sent: Option<&IfNoneMatch>) {
    let Some(sent) = sent else { return };
    let Some(issued) = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(EntityTag::parse)
    else {
        return;
    };
    let Some(theirs) = sent
        .tags
        .iter()
        .find(|t| t.opaque != issued.opaque && strip_coding(&t.opaque) == issued.opaque)
    else {
        return;
    };
    let echoed = EntityTag {
        weak: issued.weak,
        opaque: theirs.opaque.clone(),
    };
    if let Ok(value) = HeaderValue::from_str(&echoed.to_string()) {
        response.headers_mut().insert(header::ETAG, value);
    }
}

/// The 304 for `response`: no body, and of its headers only those a 304 must repeat (RFC 9110
/// §15.4.5). The body is dropped unread, so a compressed one costs nothing.
fn not_modified(response: Response) -> Response {
    const KEPT: [HeaderName; 6] = [
        header::ETAG,
        header::CACHE_CONTROL,
        header::VARY,
        header::CONTENT_LOCATION,
        header::DATE,
        header::EXPIRES,
    ];
    // A body of unknown length, so the router adds no `Content-Length: 0` (a 304 may only carry
    // the length of the 200's body, which is not known here); hyper sends none for a 304.
    let empty = futures_util::stream::empty::<Result<Bytes, std::convert::Infallible>>();
    let mut answer = Response::new(Body::from_stream(empty));
    *answer.status_mut() = StatusCode::NOT_MODIFIED;
    for name in KEPT {
        for value in response.headers().get_all(&name) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

/// Removes a compression suffix from `If-None-Match` or `If-Match` tags, so a handler sees the
/// tag it issued. Leaves the header as it was when nothing changes (or it cannot be parsed).
fn strip_coding_suffixes(headers: &mut HeaderMap, name: HeaderName) {
    let Some(condition) = IfNoneMatch::parse_named(headers, &name) else {
        return;
    };
    if condition.any
        || condition
            .tags
            .iter()
            .all(|t| strip_coding(&t.opaque) == t.opaque)
    {
        return;
    }
    let list: Vec<String> = condition
        .tags
        .iter()
        .map(|t| {
            EntityTag {
                weak: t.weak,
                opaque: strip_coding(&t.opaque).to_owned(),
            }
            .to_string()
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
        headers.insert(name, value);
    }
}

/// `opaque` without a trailing `-gzip`, `-br` or `-zstd`.
fn strip_coding(opaque: &str) -> &str {
    CODINGS
        .iter()
        .find_map(|coding| {
            opaque
                .strip_suffix(coding)
                .and_then(|rest| rest.strip_suffix('-'))
                .filter(|base| !base.is_empty())
        })
        .unwrap_or(opaque)
}

/// An entity tag (RFC 9110 §8.8.3): `"opaque"` or `W/"opaque"`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EntityTag {
    weak: bool,
    /// Between the quotes.
    opaque: String,
}

impl EntityTag {
    /// One tag, exactly (surrounding whitespace allowed).
    fn parse(text: &str) -> Option<EntityTag> {
        match parse_tag(text.trim()) {
            Some((tag, "")) => Some(tag),
            _ => None,
        }
    }
}

impl std::fmt::Display for EntityTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.opaque)
    }
}

/// A tag at the start of `text`, and what follows it.
fn parse_tag(text: &str) -> Option<(EntityTag, &str)> {
    let (weak, quoted) = match text.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let inner = quoted.strip_prefix('"')?;
    let end = inner.find('"')?;
    let opaque = &inner[..end];
    // etagc: visible ASCII but the quote, or obs-text.
    if !opaque
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    let tag = EntityTag {
        weak,
        opaque: opaque.to_owned(),
    };
    Some((tag, &inner[end + 1..]))
}

/// A parsed `If-None-Match` (or, with the same grammar, `If-Match`): `*` or a list of tags.
#[derive(Debug, Default, PartialEq, Eq)]
struct IfNoneMatch {
    any: bool,
    tags: Vec<EntityTag>,
}

impl IfNoneMatch {
    fn parse(headers: &HeaderMap) -> Option<IfNoneMatch> {
        IfNoneMatch::parse_named(headers, &header::IF_NONE_MATCH)
    }

    /// Every line of the header `name`, as one list (a field may be split over lines). `None`
    /// when the header is absent or malformed: a condition that cannot be read is ignored, as
    /// RFC 9110 lets a server do, so the client simply gets the full answer.
    fn parse_named(headers: &HeaderMap, name: &HeaderName) -> Option<IfNoneMatch> {
        let mut condition = IfNoneMatch::default();
        let mut seen = false;
        for value in headers.get_all(name) {
            seen = true;
            let mut rest = value.to_str().ok()?;
            loop {
                rest = rest.trim_start_matches([' ', '\t', ',']);
                if rest.is_empty() {
                    break;
                }
                if let Some(after) = rest.strip_prefix('*') {
                    condition.any = true;
                    rest = after;
                } else {
                    let (tag, after) = parse_tag(rest)?;
                    condition.tags.push(tag);
                    rest = after;
                }
                let after = rest.trim_start_matches([' ', '\t']);
                if !(after.is_empty() || after.starts_with(',')) {
                    return None;
                }
                rest = after;
            }
        }
        seen.then_some(condition)
    }

    /// The weak comparison `If-None-Match` uses: the opaque parts are equal, whatever `W/`.
    fn matches(&self, etag: &EntityTag) -> bool {
        self.any || self.tags.iter().any(|t| t.opaque == etag.opaque)
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(EVENT_STREAM.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn tag(weak: bool, opaque: &str) -> EntityTag {
        EntityTag {
            weak,
            opaque: opaque.to_owned(),
        }
    }

    fn condition(values: &[&str]) -> Option<IfNoneMatch> {
        IfNoneMatch::parse(&headers(header::IF_NONE_MATCH, values))
    }

    #[test]
    fn if_none_match_lists_parse() {
        /// `*` seen, and the tags; `None` when the header is ignored.
        type Parsed = Option<(bool, Vec<EntityTag>)>;
        let cases: &[(&[&str], Parsed)] = &[
            (&["\"a\""], Some((false, vec![tag(false, "a")]))),
            (&["*"], Some((true, vec![]))),
            (&["W/\"a\""], Some((false, vec![tag(true, "a")]))),
            (
                &[" \"a\" ,W/\"b\",, \"c\" "],
                Some((
                    false,
                    vec![tag(false, "a"), tag(true, "b"), tag(false, "c")],
                )),
            ),
            // A comma is allowed inside a tag.
            (
                &["\"a,b\", \"c\""],
                Some((false, vec![tag(false, "a,b"), tag(false, "c")])),
            ),
            // Several lines are one list.
            (
                &["\"a\"", "\"b\""],
                Some((false, vec![tag(false, "a"), tag(false, "b")])),
            ),
            (&["\"\""], Some((false, vec![tag(false, "")]))),
            (&["a"], None),
            (&["\"a"], None),
            (&["\"a\" \"b\""], None),
            (&["w/\"a\""], None),
        ];
        for (values, want) in cases {
            let got = condition(values).map(|c| (c.any, c.tags));
            assert_eq!(&got, want, "{values:?}");
        }
        assert_eq!(condition(&[]), None);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let etag = tag(false, "abc");
        for (values, want) in [
            (&["\"abc\""][..], true),
            (&["W/\"abc\""], true),
            (&["\"x\", W/\"abc\""], true),
            (&["*"], true),
            (&["\"abd\""], false),
            (&["\"abc-gzip\""], false),
            (&["\"ab\""], false),
        ] {
            assert_eq!(
                condition(values).unwrap().matches(&etag),
                want,
                "{values:?}"
            );
        }
        assert!(condition(&["\"abc\""]).unwrap().matches(&tag(true, "abc")));
    }

    #[test]
    fn coding_suffixes_are_stripped_for_handlers() {
        for (sent, seen) in [
            ("\"3-gzip\"", "\"3\""),
            ("W/\"abc-br\", \"x-zstd\"", "W/\"abc\", \"x\""),
            ("\"3\"", "\"3\""),
            ("\"-gzip\"", "\"-gzip\""),
            ("\"abc-deflate\"", "\"abc-deflate\""),
            ("*", "*"),
            ("garbage", "garbage"),
        ] {
            let mut map = headers(header::IF_MATCH, &[sent]);
            strip_coding_suffixes(&mut map, header::IF_MATCH);
            assert_eq!(map.get(header::IF_MATCH).unwrap(), seen, "{sent}");
        }
    }

    #[test]
    fn cache_control_by_class() {
        let none = HeaderMap::new();
        let stream = headers(header::CONTENT_TYPE, &[EVENT_STREAM]);
        let get = Method::GET;
        let ok = StatusCode::OK;
        let cases = [
            (&get, ok, Some("/health"), &none, "no-store"),
            (&get, ok, Some("/api/v1/health"), &none, "no-store"),
            (&get, ok, Some("/ready"), &none, "no-store"),
            (&get, ok, Some("/metrics"), &none, "no-store"),
            (
                &get,
                ok,
                Some("/openapi.json"),
                &none,
                "public, max-age=300",
            ),
            (
                &Method::HEAD,
                ok,
                Some("/openapi.json"),
                &none,
                "public, max-age=300",
            ),
            (&get, ok, Some("/forecast"), &none, "private, max-age=60"),
            (
                &get,
                ok,
                Some("/api/v1/forecast"),
                &none,
                "private, max-age=60",
            ),
            (
                &get,
                ok,
                Some("/api/v1/forecast/catalogue"),
                &none,
                "private, max-age=60",
            ),
            (&get, ok, Some("/api/v1/tenant"), &none, "private, no-cache"),
            (
                &get,
                StatusCode::NOT_MODIFIED,
                Some("/api/v1/tenant"),
                &none,
                "private, no-cache",
            ),
            (&get, ok, Some("/api/v1/flags/stream"), &stream, "no-store"),
            (
                &get,
                StatusCode::NOT_FOUND,
                Some("/api/v1/tenant"),
                &none,
                "no-store",
            ),
            (
                &get,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("/ready"),
                &none,
                "no-store",
            ),
            (
                &get,
                StatusCode::UNAUTHORIZED,
                Some("/forecast"),
                &none,
                "no-store",
            ),
            (&get, StatusCode::NOT_FOUND, None, &none, "no-store"),
            (
                &Method::POST,
                ok,
                Some("/ofrep/v1/evaluate/flags"),
                &none,
                "no-store",
            ),
            (
                &Method::PUT,
                ok,
                Some("/api/v1/flags/{key}"),
                &none,
                "no-store",
            ),
        ];
        for (method, status, route, headers, want) in cases {
            assert_eq!(
                cache_control(method, status, route, headers),
                want,
                "{method} {route:?} {status}"
            );
        }
    }

    #[test]
    fn vary_merges_without_duplicates() {
        let mut map = headers(header::VARY, &["accept-encoding"]);
        add_vary(&mut map, &["Authorization", "Accept-Encoding"]);
        assert_eq!(map.get_all(header::VARY).iter().count(), 1);
        assert_eq!(
            map.get(header::VARY).unwrap(),
            "Authorization, Accept-Encoding"
        );
        let mut map = headers(header::VARY, &["Origin"]);
        add_vary(&mut map, &["Accept-Encoding"]);
        assert_eq!(map.get(header::VARY).unwrap(), "Accept-Encoding, Origin");
        let mut map = headers(header::VARY, &["*"]);
        add_vary(&mut map, &["Accept-Encoding"]);
        assert_eq!(map.get(header::VARY).unwrap(), "*");
    }

    #[tokio::test]
    async fn small_bodies_are_read_whole() {
        let chunks = ["ab", "cd", "ef"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        match buffer(body, 6).await {
            Buffered::Whole(bytes) => assert_eq!(&bytes[..], b"abcdef"),
            Buffered::PassedOn(_) => panic!("six bytes fit a six-byte bound"),
        }
    }

    #[tokio::test]
    async fn bodies_over_the_bound_pass_on_whole() {
        let chunks = ["ab", "cd", "ef"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let Buffered::PassedOn(body) = buffer(body, 3).await else {
            panic!("six bytes do not fit a three-byte bound");
        };
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcdef");
        // A body known to be too big is not read at all.
        let Buffered::PassedOn(body) = buffer(Body::from("abcdef"), 3).await else {
            panic!("known to be too big");
        };
        assert_eq!(body.size_hint().exact(), Some(6));
    }

    /// The envelope renders problems after compression, so an error body must reach it
    /// unencoded; successes of the same size are compressed.
    #[tokio::test]
    async fn error_responses_are_not_compressed() {
        use axum::response::IntoResponse;
        use tower::{Layer, ServiceExt};
        let body = "x".repeat(600);
        for (status, compressed) in [
            (StatusCode::OK, true),
            (StatusCode::NOT_FOUND, false),
            (StatusCode::UNPROCESSABLE_ENTITY, false),
            (StatusCode::INTERNAL_SERVER_ERROR, false),
        ] {
            let body = body.clone();
            let service = compression().layer(tower::service_fn(move |_: Request| {
                let response = (status, body.clone()).into_response();
                async move { Ok::<_, std::convert::Infallible>(response) }
            }));
            let req = Request::builder()
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap();
            let response = service.oneshot(req).await.unwrap();
            let encoded = response.headers().contains_key(header::CONTENT_ENCODING);
            assert_eq!(encoded, compressed, "{status}");
        }
    }

    #[test]
    fn only_the_compression_layers_encodings_rename_the_etag() {
        let renamed = |etag: &str, marked: bool| {
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(header::ETAG, HeaderValue::from_str(etag).unwrap());
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            if marked {
                response.extensions_mut().insert(Unencoded);
            }
            name_encoded_representation(&mut response);
            response.headers()[header::ETAG]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(renamed("\"abc\"", true), "\"abc-gzip\"");
        // Encoded by the handler: its tag already names the encoded bytes.
        assert_eq!(renamed("\"abc\"", false), "\"abc\"");
        // Weak tags may be shared by representations that are not byte-identical.
        assert_eq!(renamed("W/\"abc\"", true), "W/\"abc\"");
    }

    #[test]
    fn hash_etags_are_quoted_hex() {
        let etag = hash_etag(b"{}");
        assert_eq!(etag.len(), 34);
        assert!(EntityTag::parse(&etag).is_some_and(|t| !t.weak && t.opaque.len() == 32));
        assert_ne!(etag, hash_etag(b"{ }"));
    }
}
