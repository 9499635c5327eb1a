//! The web UI, embedded: serves the files built from `ui/web` by `build.rs` at `/`, with a
//! single-page-app fallback for browser navigations (a GET that accepts `text/html`), so deep
//! links like `/traces/<id>` load the app. Every other unknown path gets a JSON 404 naming it:
//! an API client (a Grafana data source pointed at a path we do not serve) must not get HTML.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn asset(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

fn serve(path: &str, body: &'static [u8]) -> Response {
    // Hashed bundle files never change; index.html must be revalidated to pick up new builds.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// Whether a request is a browser navigating to a page (rather than an API call).
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    let accepts_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let navigate = headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate");
    (*method == Method::GET || *method == Method::HEAD) && (accepts_html || navigate)
}

async fn fallback(method: Method, headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(body) = asset(path)
        && (method == Method::GET || method == Method::HEAD)
    {
        return serve(path, body);
    }
    let api = ["api/", "jaeger/", "v1/"]
        .iter()
        .any(|p| path.starts_with(p));
    if api || path.starts_with("assets/") || !is_navigation(&method, &headers) {
        let body = serde_like_error(&format!("no such path: {method} /{path}"));
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    match asset("index.html") {
        Some(body) => serve("index.html", body),
        None => (StatusCode::NOT_FOUND, "web UI not built").into_response(),
    }
}

fn serde_like_error(message: &str) -> String {
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![],
            c => vec![c],
        })
        .collect();
    format!(r#"{{"error":{{"code":"not_found","message":"{escaped}"}}}}"#)
}

/// A router that answers with an embedded file, the SPA's `index.html` for browser
/// navigations, or a JSON 404.
pub fn router() -> Router {
    Router::new().fallback(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_with(path: &str, accept: &str) -> (StatusCode, String, String) {
        let req = Request::get(path)
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        let resp = router().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(path: &str) -> (StatusCode, String, String) {
        get_with(path, "text/html,application/xhtml+xml,*/*;q=0.8").await
    }

    #[tokio::test]
    async fn unknown_api_paths_get_json_404s_not_the_app() {
        for path in [
            "/tempo/api/echo",
            "/prometheus/api/v1/query",
            "/loki/api/v1/labels",
        ] {
            let (s, ct, body) = get_with(path, "application/json").await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(ct, "application/json");
            assert!(body.contains(path), "{body}");
        }
        let (s, ct, _) = get_with("/traces", "*/*").await;
        assert_eq!(
            (s, ct.as_str()),
            (StatusCode::NOT_FOUND, "application/json")
        );
        let (s, ct, _) = get_with("/", "*/*").await;
        assert_eq!(s, StatusCode::OK, "the root is always the app");
        assert!(ct.starts_with("text/html"));
    }

    #[tokio::test]
    async fn serves_index_assets_and_spa_fallback() {
        let (s, ct, body) = get("/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("text/html"));
        assert!(
            body.contains("<div id=\"app\"") || body.contains("id=\"app\""),
            "{body}"
        );
        let (s, _, deep) = get("/traces/0123456789abcdef0123456789abcdef").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(deep, body, "deep links get index.html");
        let js = ASSETS.iter().find(|(p, _)| p.ends_with(".js")).unwrap().0;
        let (s, ct, _) = get(&format!("/{js}")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("text/javascript"));
        let (s, ct, _) = get("/api/v1/nope").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(ct, "application/json");
    }
}
