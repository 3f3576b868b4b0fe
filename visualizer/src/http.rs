//! The HTTP side: the embedded page, `GET /api/block/HASH`, and the websocket at `/ws`.
//!
//! | request | answer |
//! |---------|--------|
//! | `GET /`, `GET /app.js`, ... | the embedded file ([`crate::assets`]) |
//! | `GET /api/block/HASH` | [`crate::view::BlockDetails`] as JSON, from the window or the old blocks fetched ([`crate::history`]); 400 for a bad hash, 404 for an unknown block |
//! | `GET /api/blocks?before=HASH&count=N` | [`crate::history::Page`]: the best-chain blocks just below `HASH`, from the window or fetched from a node and checked; 400, 404 (unknown block), 429 (too many pages), 503 (no node sent them) |
//! | `GET /ws` (upgrade) | the browser protocol ([`crate::browser`]); 403 if the `Origin` is another site's |
//! | anything else | 404 |
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and images only from
//! this server, no inline script, connections only back to this host (HTTP and websocket). The
//! page never builds HTML from data either; the policy is the second line of defence.
//!
//! A websocket is opened only by the page itself: a browser always sends `Origin` on a websocket
//! handshake, and it must be this server (`http://` or `https://` plus the request's `Host`), so
//! another site's page cannot open websockets from its visitors' browsers. A request with no
//! `Origin` is not from a browser page (a test, a script): it is accepted, and like any other it
//! takes one of the browser slots ([`daemon::slots`]: a cap per address, and past it or past the
//! total, the longest-idle websocket of the address holding the most is closed to make room).
//! The page sends nothing but the websocket's own control frames, so a message from a browser
//! may be at most [`MAX_FROM_BROWSER`] bytes: a longer one closes the websocket before it is
//! buffered (the library's default, 64 MiB, let the 16 websockets of one address make the
//! visualizer hold 1 GiB).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use daemon::slots::SlotTable;
use protocol::BlockHash;
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
use crate::history::{DEFAULT_PAGE_BLOCKS, History, HistoryError};
use crate::hub::Hub;

/// The most bytes one message (and one frame) from a browser may have.
pub const MAX_FROM_BROWSER: usize = 4096;

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

/// Whether a websocket request may be served: one from a browser page carries `Origin`, which
/// must be this very server; one without is from a program, not a page, and is served.
fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    ["http://", "https://"].iter().any(|scheme| {
        let (Some(start), Some(rest)) = (origin.get(..scheme.len()), origin.get(scheme.len()..))
        else {
            return false;
        };
        start.eq_ignore_ascii_case(scheme) && rest.eq_ignore_ascii_case(host)
    })
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

async fn block_details(
    hub: Hub,
    history: Arc<History>,
    hash: String,
) -> Result<Response, Infallible> {
    let Ok(hash) = hash.parse::<BlockHash>() else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "a block hash is 64 hex digits\n",
        ));
    };
    Ok(match hub.details(hash).await {
        Some(Some(details)) => warp::reply::json(&details).into_response(),
        Some(None) => match history.details(&hash).await {
            Some(details) => warp::reply::json(&details).into_response(),
            None => text(
                StatusCode::NOT_FOUND,
                "no such block in the visualizer's window, nor among the old blocks fetched \
                 (scroll back to it, or ask GET /api/blocks?before=HASH)\n",
            ),
        },
        None => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    })
}

/// `GET /api/blocks?before=HASH&count=N`: a page of best-chain blocks below `HASH`.
async fn older_blocks(
    history: Arc<History>,
    remote: Option<SocketAddr>,
    query: HashMap<String, String>,
) -> Result<Response, Infallible> {
    let source = remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if let Err(error) = history.admit(source) {
        return Ok(problem(&error));
    }
    let Some(Ok(before)) = query.get("before").map(|h| h.parse::<BlockHash>()) else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "before= must be a block hash, 64 hex digits\n",
        ));
    };
    let count = match query.get("count").map(|c| c.parse::<u64>()) {
        None => DEFAULT_PAGE_BLOCKS,
        Some(Ok(count)) => count,
        Some(Err(_)) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "count= must be a number of blocks\n",
            ));
        }
    };
    Ok(match history.page(before, count).await {
        Ok(page) => warp::reply::json(&page).into_response(),
        Err(error) => problem(&error),
    })
}

/// A plain-text answer saying why a page of old blocks was not served.
fn problem(error: &HistoryError) -> Response {
    let status = match error {
        HistoryError::Unknown => StatusCode::NOT_FOUND,
        HistoryError::TooMany => StatusCode::TOO_MANY_REQUESTS,
        HistoryError::Unavailable(_) | HistoryError::Gone => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = warp::reply::with_status(format!("{error}\n"), status).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Every route, each answer with the security headers. `browsers` holds the open websockets'
/// slots; a websocket silent for `idle_timeout` is closed.
pub fn routes(
    hub: Hub,
    history: Arc<History>,
    browsers: SlotTable,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let ws_hub = hub.clone();
    let ws = warp::path!("ws")
        .and(warp::ws())
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .map(
            move |ws: warp::ws::Ws,
                  remote: Option<SocketAddr>,
                  origin: Option<String>,
                  host: Option<String>| {
                if !same_origin(origin.as_deref(), host.as_deref()) {
                    tracing::debug!(?origin, ?host, "refused a websocket from another site");
                    return text(
                        StatusCode::FORBIDDEN,
                        "only this visualizer's own page may open its websocket\n",
                    );
                }
                // Always known for a TCP listener; the unspecified address is one shared bucket.
                let source = remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                let slot = browsers.admit(source);
                let (hub, shutdown) = (ws_hub.clone(), shutdown.clone());
                ws.max_message_size(MAX_FROM_BROWSER)
                    .max_frame_size(MAX_FROM_BROWSER)
                    .on_upgrade(move |socket| {
                        browser::serve(socket, hub, shutdown, slot, idle_timeout)
                    })
                    .into_response()
            },
        );
    let details_history = Arc::clone(&history);
    let details = warp::path!("api" / "block" / String)
        .and(warp::get())
        .and_then(move |hash| block_details(hub.clone(), Arc::clone(&details_history), hash));
    let older = warp::path!("api" / "blocks")
        .and(warp::get())
        .and(warp::addr::remote())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(move |remote, query| older_blocks(Arc::clone(&history), remote, query));
    let files = warp::get()
        .and(warp::path::full())
        .map(|path: warp::path::FullPath| asset(path.as_str()));
    ws.or(details)
        .unify()
        .or(older)
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

    #[test]
    fn only_the_page_itself_opens_a_websocket() {
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(Some("http://127.0.0.1:8080"), host));
        assert!(same_origin(Some("HTTPS://127.0.0.1:8080"), host));
        assert!(same_origin(None, host), "not a browser page");
        assert!(!same_origin(Some("http://evil.example"), host));
        assert!(!same_origin(Some("http://127.0.0.1:8081"), host));
        assert!(!same_origin(Some("null"), host));
        assert!(!same_origin(Some("http://127.0.0.1:8080"), None));
        assert!(!same_origin(Some("http://é:8080"), Some("x:8080")));
    }
}
