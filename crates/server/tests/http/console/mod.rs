//! The web console through its HTTP interface: sign-in, sessions, CSRF, and each engine's
//! pages. One file per area; [`Console`] is a signed-in browser stand-in they share.

mod experiments;
mod feedback;
mod flag_usage;
mod flags;
mod forecasts;
mod jobs;
mod keys;
mod limits;
mod llm;
mod overview;
mod predictions;
mod privacy;
mod rollouts;
mod security;
mod session;
mod weber;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::{Reply, TestApp};

/// A signed-in console user: the session cookie and the page's CSRF token.
pub struct Console<'a> {
    app: &'a TestApp,
    pub cookie: String,
    pub csrf: String,
}

impl TestApp {
    /// Signs in with `key` as a browser would and reads the CSRF token off the overview page.
    pub async fn console(&self, key: &str) -> Console<'_> {
        let reply = self.sign_in(key).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
        let set_cookie = reply
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie");
        let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
        let mut console = Console {
            app: self,
            cookie,
            csrf: String::new(),
        };
        let overview = console.get("/console").await;
        assert_eq!(overview.status, StatusCode::OK, "{}", overview.text());
        console.csrf = csrf_of(&overview.text()).expect("a CSRF token on the page");
        console
    }

    /// `POST /console/sign-in` with `key`, as the sign-in form sends it.
    pub async fn sign_in(&self, key: &str) -> Reply {
        let body = form(&[("api_key", key), ("next", "/console")]);
        self.send(
            Request::post("/console/sign-in")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
}

impl Console<'_> {
    pub async fn get(&self, path: &str) -> Reply {
        self.app
            .send(
                Request::get(path)
                    .header("cookie", &self.cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
    }

    /// Like [`Console::get`], as htmx asks (it wants a fragment).
    pub async fn get_htmx(&self, path: &str) -> Reply {
        self.app
            .send(
                Request::get(path)
                    .header("cookie", &self.cookie)
                    .header("hx-request", "true")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
    }

    /// Posts `fields` plus the session's CSRF token, as one of the console's forms does.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &form(&all), false).await
    }

    /// Like [`Console::post`], as htmx sends it (token in the header, `HX-Request` set).
    pub async fn post_htmx(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("hx-request", "true")
            .header("x-csrf-token", &self.csrf)
            .body(Body::from(form(fields)))
            .unwrap();
        self.app.send(req).await
    }

    /// Posts a body exactly as given (no token added unless it is in `body`).
    pub async fn post_raw(&self, path: &str, body: &str, cross_site: bool) -> Reply {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        if cross_site {
            req = req
                .header("sec-fetch-site", "cross-site")
                .header("origin", "https://evil.example");
        }
        self.app
            .send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }
}

/// `name=value&…`, URL-encoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The CSRF token a console page carries in its forms.
pub fn csrf_of(html: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}
