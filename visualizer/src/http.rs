//! The HTTP side: the embedded page, `GET /api/block/HASH`, and the websocket at `/ws`.
//!
//! | request | answer |
//! |---------|--------|
//! | `GET /`, `GET /app.js`, ... | the embedded file ([`crate::assets`]) |
//! | `GET /api/block/HASH` | [`crate::view::BlockDetails`] as JSON; 400 for a bad hash, 404 for an unknown block |
//! | `GET /ws` (upgrade) | the browser protocol ([`crate::browser`]); 503 past the browser cap |
//! | anything else | 404 |
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and images only from
//! this server, no inline script, connections only back to this host (HTTP and websocket). The
//! page never builds HTML from data either; the policy is the second line of defence.

use std::convert::Infallible;
use std::sync::Arc;

use protocol::BlockHash;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::reply::{Reply, Response};

use crate::assets;
use crate::browser;
use crate::hub::Hub;

/// The policy for every answer; `{connect}` becomes the websocket origins of the host asked.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'{connect}; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The websocket origins the page may connect to, from the request's `Host`, if it is a plain
/// `host:port` (anything else could smuggle text into the header).
fn websocket_origins(host: Option<&str>) -> String {
    let plain = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    match host.filter(plain) {
        Some(host) => format!(" ws://{host} wss://{host}"),
        None => String::new(),
    }
}

/// Adds the security headers every answer carries.
fn secure(mut response: Response, host: Option<String>) -> Response {
    let csp = CSP.replace("{connect}", &websocket_origins(host.as_deref()));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The page is compiled into the binary: a new binary must not meet an old cached script.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut response = warp::reply::with_status(body, status).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn asset(path: &str) -> Response {
    let Some(asset) = assets::find(path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut response = asset.body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    response
}

async fn block_details(hub: Hub, hash: String) -> Result<Response, Infallible> {
    let Ok(hash) = hash.parse::<BlockHash>() else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "a block hash is 64 hex digits\n",
        ));
    };
    Ok(match hub.details(hash).await {
        Some(Some(details)) => warp::reply::json(&details).into_response(),
        Some(None) => text(StatusCode::NOT_FOUND, "no such block\n"),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    })
}

/// Every route, each answer with the security headers. `browsers` caps the open websockets.
pub fn routes(
    hub: Hub,
    browsers: Arc<Semaphore>,
    shutdown: CancellationToken,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let ws_hub = hub.clone();
    let ws = warp::path!("ws")
        .and(warp::ws())
        .map(move |ws: warp::ws::Ws| {
            let Ok(permit) = Arc::clone(&browsers).try_acquire_owned() else {
                return text(StatusCode::SERVICE_UNAVAILABLE, "too many browsers\n");
            };
            let (hub, shutdown) = (ws_hub.clone(), shutdown.clone());
            ws.on_upgrade(move |socket| browser::serve(socket, hub, shutdown, permit))
                .into_response()
        });
    let details = warp::path!("api" / "block" / String)
        .and(warp::get())
        .and_then(move |hash| block_details(hub.clone(), hash));
    let files = warp::get()
        .and(warp::path::full())
        .map(|path: warp::path::FullPath| asset(path.as_str()));
    ws.or(details)
        .unify()
        .or(files)
        .unify()
        .and(warp::header::optional::<String>("host"))
        .map(secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_host_reaches_the_policy() {
        assert_eq!(
            websocket_origins(Some("127.0.0.1:8080")),
            " ws://127.0.0.1:8080 wss://127.0.0.1:8080"
        );
        assert_eq!(
            websocket_origins(Some("[::1]:80")),
            " ws://[::1]:80 wss://[::1]:80"
        );
        assert_eq!(websocket_origins(Some("evil; script-src *")), "");
        assert_eq!(websocket_origins(Some("")), "");
        assert_eq!(websocket_origins(None), "");
    }
}
