//! The console's static files, compiled into the binary and served under names that carry a
//! hash of their content, so browsers may keep them for a year: a new build with a changed file
//! links a new name.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

use super::ConsoleError;

struct Asset {
    /// The name as linked: `<stem>.<hash>.<extension>`.
    file: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The links pages use.
pub(crate) struct AssetUrls {
    pub css: &'static str,
    pub htmx: &'static str,
    pub script: &'static str,
}

const SOURCES: [(&str, &str, &str, &[u8]); 3] = [
    (
        "console",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console/console.css"),
    ),
    // htmx 2.0.11 (https://htmx.org, Zero-Clause BSD: assets/console/htmx.LICENSE), unmodified.
    (
        "htmx-2.0.11",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/htmx.min.js"),
    ),
    (
        "console",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/console.js"),
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|&(stem, extension, content_type, bytes)| {
            let digest = hex::encode(sha2::Sha256::digest(bytes));
            Asset {
                file: format!("{stem}.{}.{extension}", &digest[..12]),
                content_type,
                bytes,
            }
        })
        .collect()
});

static URLS: LazyLock<AssetUrls> = LazyLock::new(|| {
    let url = |i: usize| -> &'static str {
        Box::leak(format!("/console/assets/{}", ASSETS[i].file).into_boxed_str())
    };
    AssetUrls {
        css: url(0),
        htmx: url(1),
        script: url(2),
    }
});

/// Where the pages link their style and scripts.
pub(crate) fn urls() -> &'static AssetUrls {
    &URLS
}

/// Bytes of script and of style a console page loads (before compression), for the docs and
/// the speed check.
pub fn page_weight() -> (usize, usize) {
    let script = ASSETS
        .iter()
        .filter(|a| a.file.ends_with(".js"))
        .map(|a| a.bytes.len())
        .sum();
    let style = ASSETS
        .iter()
        .filter(|a| a.file.ends_with(".css"))
        .map(|a| a.bytes.len())
        .sum();
    (script, style)
}

/// `GET /console/assets/{file}`: only the current hashed names exist.
pub(crate) async fn serve(Path(file): Path<String>) -> Result<Response, ConsoleError> {
    let Some(asset) = ASSETS.iter().find(|a| a.file == file) else {
        return Err(ConsoleError::NotFound(format!(
            "no console asset named {file}"
        )));
    };
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
