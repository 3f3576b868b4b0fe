//! The page, compiled into the binary: every file of `web/` with its content type, so
//! `monkey-visualizer` serves the same page from any folder and needs nothing else on disk.
//! Nothing in it is loaded from elsewhere (no CDN, fonts or scripts); the Content-Security-Policy
//! that [`crate::http`] sends with it forbids that too.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Embeds `web/NAME` at the URL path `/NAME`.
macro_rules! web_file {
    ($name:literal, $content_type:literal) => {
        Asset {
            path: concat!("/", $name),
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/", $name)),
        }
    };
}

/// Every file of the page. `/` serves `index.html`.
pub const ASSETS: &[Asset] = &[
    web_file!("index.html", "text/html; charset=utf-8"),
    web_file!("style.css", "text/css; charset=utf-8"),
    web_file!("chain.js", "text/javascript; charset=utf-8"),
    web_file!("app.js", "text/javascript; charset=utf-8"),
    web_file!("model.js", "text/javascript; charset=utf-8"),
    web_file!("dom.js", "text/javascript; charset=utf-8"),
    web_file!("strip.js", "text/javascript; charset=utf-8"),
    web_file!("panels.js", "text/javascript; charset=utf-8"),
    web_file!("tamper.js", "text/javascript; charset=utf-8"),
    web_file!("graph.js", "text/javascript; charset=utf-8"),
    web_file!("charts.js", "text/javascript; charset=utf-8"),
    web_file!(
        "vendor/uplot/uPlot.esm.js",
        "text/javascript; charset=utf-8"
    ),
    web_file!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    web_file!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    web_file!("favicon.svg", "image/svg+xml"),
];

/// The file served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}
