//! `signalbox loadtest --scenario console`: each web console page's time to answer, and the
//! bytes of script and style it loads.
//!
//! Signs in with an API key (`--key`, or the demo tenant's key from `DATA_DIR/demo-tenant.json`)
//! as the sign-in form does, then finds the pages by following the console's own links from the
//! overview (at most [`PER_KIND`] pages of each kind, e.g. two user pages, and [`MAX_PAGES`] in
//! all), and runs the generic load generator against each page in turn with the session cookie:
//! `--requests` requests (or `--duration`) over `--connections` connections. Latency is measured
//! by the client over loopback, so it bounds the server's time from above.
//!
//! Each page's assets (`/console/assets/…`) are fetched once as served, plain and compressed
//! (`Accept-Encoding: br, gzip`), for the page weight.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::freshness::{connect, Sender};

/// Pages measured at most.
const MAX_PAGES: usize = 40;
/// Pages of one kind (the same section and depth) measured at most.
const PER_KIND: usize = 2;

pub struct ConsoleLoadPlan {
    pub base: Uri,
    pub key: String,
    pub connections: usize,
    pub stop: loadtest::Stop,
    pub request_timeout: std::time::Duration,
}

/// One page's figures.
#[derive(Serialize, Debug)]
pub struct PageReport {
    pub path: String,
    /// Responses by status (every one should be 200).
    pub status_counts: BTreeMap<u16, u64>,
    pub requests: u64,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The page's HTML, as served uncompressed and compressed.
    pub html_bytes: usize,
    pub html_bytes_compressed: usize,
    /// Script and style the page loads, uncompressed and as served compressed.
    pub script_bytes: usize,
    pub script_bytes_compressed: usize,
    pub style_bytes: usize,
    pub style_bytes_compressed: usize,
}

#[derive(Serialize, Debug)]
pub struct ConsoleReport {
    pub pages: Vec<PageReport>,
    /// `server::console_page_weight()`: all the console's script and style, uncompressed.
    pub script_bytes_total: usize,
    pub style_bytes_total: usize,
}

struct Fetched {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn fetch(
    sender: &mut Sender,
    base: &Uri,
    method: Method,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<String>,
) -> anyhow::Result<Fetched> {
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

/// The demo tenant's key, from the file `serve` wrote on first start.
pub fn demo_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(crate::serve::DEMO_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("key: no --key given and cannot read {}", path.display()))?;
    let demo: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("key: {} is not JSON", path.display()))?;
    demo["api_key"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("key: {} has no api_key", path.display()))
}

/// Signs in with the key; returns the `Cookie` header value of the session.
async fn sign_in(sender: &mut Sender, base: &Uri, key: &str) -> anyhow::Result<HeaderValue> {
    let form = format!("api_key={}&next=%2Fconsole", form_encode(key));
    let reply = fetch(
        sender,
        base,
        Method::POST,
        "/console/sign-in",
        &[(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )],
        Some(form),
    )
    .await?;
    if reply.status != 303 {
        bail!(
            "sign-in: the console answered {} (is the key valid?)",
            reply.status
        );
    }
    let cookie = reply
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("sign-in: no session cookie in the answer")?;
    Ok(HeaderValue::from_str(cookie)?)
}

/// `value` URL-encoded for a form body.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The console links of a page, `&amp;` decoded and without fragments.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with("/console"))
        .map(|href| href.split('#').next().unwrap_or(href).replace("&amp;", "&"))
        .collect()
}

/// The asset links (`/console/assets/…`) of a page, in `href` or `src`.
fn assets(html: &str) -> BTreeSet<String> {
    html.split(['"', '\''])
        .filter(|s| s.starts_with("/console/assets/"))
        .map(str::to_owned)
        .collect()
}

/// What kind of page a path is: its section and depth (`weber/3` for a segment page, `weber/4`
/// for a user page), so the many pages of one kind count once.
fn kind(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!(
        "{}/{}",
        segments.get(1).copied().unwrap_or(""),
        segments.len()
    )
}

/// The pages reachable from the overview, breadth first.
async fn discover(
    sender: &mut Sender,
    base: &Uri,
    cookie: &[(HeaderName, HeaderValue)],
) -> anyhow::Result<Vec<String>> {
    let mut pages = Vec::new();
    let mut seen = BTreeSet::new();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut queue = VecDeque::from(["/console".to_owned()]);
    while let Some(path) = queue.pop_front() {
        if pages.len() >= MAX_PAGES {
            break;
        }
        if path.starts_with("/console/assets/")
            || path.starts_with("/console/sign-")
            || !seen.insert(path.clone())
        {
            continue;
        }
        let count = per_kind.entry(kind(&path)).or_default();
        if *count >= PER_KIND {
            continue;
        }
        let reply = fetch(sender, base, Method::GET, &path, cookie, None).await?;
        if reply.status != 200 {
            continue;
        }
        *count += 1;
        pages.push(path);
        queue.extend(links(&String::from_utf8_lossy(&reply.body)));
    }
    Ok(pages)
}

/// Bytes of `path` as served: (uncompressed, compressed).
async fn weigh(
    sender: &mut Sender,
    base: &Uri,
    path: &str,
    cookie: &[(HeaderName, HeaderValue)],
) -> anyhow::Result<(usize, usize)> {
    let plain = fetch(sender, base, Method::GET, path, cookie, None).await?;
    let mut compressed_headers = cookie.to_vec();
    compressed_headers.push((
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("br, gzip"),
    ));
    let compressed = fetch(sender, base, Method::GET, path, &compressed_headers, None).await?;
    Ok((plain.body.len(), compressed.body.len()))
}

pub async fn run(plan: ConsoleLoadPlan) -> anyhow::Result<ConsoleReport> {
    let mut sender = connect(&plan.base).await?;
    let cookie_value = sign_in(&mut sender, &plan.base, &plan.key).await?;
    let cookie = vec![(header::COOKIE, cookie_value)];
    let paths = discover(&mut sender, &plan.base, &cookie).await?;
    let mut asset_weights: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut pages = Vec::with_capacity(paths.len());
    for path in paths {
        let html = fetch(&mut sender, &plan.base, Method::GET, &path, &cookie, None).await?;
        let page_assets = assets(&String::from_utf8_lossy(&html.body));
        let (html_bytes, html_bytes_compressed) =
            weigh(&mut sender, &plan.base, &path, &cookie).await?;
        let (mut script, mut script_c, mut style, mut style_c) = (0, 0, 0, 0);
        for asset in page_assets {
            let weight = match asset_weights.get(&asset) {
                Some(w) => *w,
                None => {
                    let w = weigh(&mut sender, &plan.base, &asset, &[]).await?;
                    asset_weights.insert(asset.clone(), w);
                    w
                }
            };
            if asset.ends_with(".js") {
                script += weight.0;
                script_c += weight.1;
            } else if asset.ends_with(".css") {
                style += weight.0;
                style_c += weight.1;
            }
        }
        let url: Uri = format!("{}{}", base_url(&plan.base), path)
            .parse()
            .with_context(|| format!("page {path}: not a URL"))?;
        let mut load = loadtest::Plan::new(url, plan.connections, plan.stop);
        load.headers = cookie.clone();
        load.request_timeout = plan.request_timeout;
        load.validate()?;
        eprintln!("loadtest: console page {path}");
        let report = loadtest::run(load).await?;
        pages.push(PageReport {
            path,
            status_counts: report.status_counts,
            requests: report.requests,
            median_ms: report.latency_ms.p50,
            p99_ms: report.latency_ms.p99,
            max_ms: report.latency_ms.max,
            html_bytes,
            html_bytes_compressed,
            script_bytes: script,
            script_bytes_compressed: script_c,
            style_bytes: style,
            style_bytes_compressed: style_c,
        });
    }
    let (script_bytes_total, style_bytes_total) = server::console_page_weight();
    Ok(ConsoleReport {
        pages,
        script_bytes_total,
        style_bytes_total,
    })
}

/// `http://host:port` of the base URL.
fn base_url(base: &Uri) -> String {
    format!(
        "{}://{}",
        base.scheme_str().unwrap_or("http"),
        base.authority().map(|a| a.as_str()).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("sb_Ab9-x.~"), "sb_Ab9-x.~");
        assert_eq!(form_encode("a+b/c d&"), "a%2Bb%2Fc%20d%26");
    }

    #[test]
    fn pages_are_grouped_by_section_and_depth() {
        assert_eq!(kind("/console"), "/1");
        assert_eq!(kind("/console/flags?environment=production"), "flags/2");
        assert_eq!(kind("/console/weber/users/u-1"), "weber/4");
        assert_eq!(kind("/console/weber/users/u-2?x=1"), "weber/4");
        assert_eq!(
            kind("/console/feedback/fb-1"),
            kind("/console/feedback/fb-2")
        );
        assert_ne!(
            kind("/console/flags/production/a"),
            kind("/console/flags/production/a/edit")
        );
    }

    #[test]
    fn links_and_assets_are_read_off_the_html() {
        let html = r##"<a href="/console/flags?a=1&amp;b=2#top">x</a> <a href="https://x">y</a>
            <link rel="stylesheet" href="/console/assets/console.abc.css">
            <script src="/console/assets/htmx.def.js" defer></script>"##;
        assert_eq!(
            links(html),
            ["/console/flags?a=1&b=2", "/console/assets/console.abc.css"]
        );
        assert_eq!(
            assets(html).into_iter().collect::<Vec<_>>(),
            [
                "/console/assets/console.abc.css",
                "/console/assets/htmx.def.js"
            ]
        );
    }
}
