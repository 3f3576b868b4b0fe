//! Opening the page in the user's browser, when there is one to open it in.

use std::process::Stdio;

/// Asks the desktop to open `url` and returns the opener's name; `None` when there is no
/// desktop to ask (no display on Linux, say over SSH) or the opener cannot be started. The
/// opener runs on its own; a task reaps it and logs a failure, so no zombie is left behind.
/// Must be called inside the runtime.
pub fn open(url: &str) -> Option<&'static str> {
    let opener = opener()?;
    let spawned = tokio::process::Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {}
                    Ok(status) => tracing::warn!(opener, %status, "could not open the page"),
                    Err(e) => tracing::warn!(opener, error = %e, "could not open the page"),
                }
            });
            Some(opener)
        }
        Err(e) => {
            tracing::warn!(opener, error = %e, "cannot start the browser opener");
            None
        }
    }
}

/// The desktop's "open this" command on this platform, if there is a desktop.
fn opener() -> Option<&'static str> {
    if cfg!(target_os = "macos") {
        Some("open")
    } else if cfg!(windows) {
        Some("explorer")
    } else {
        let display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        display.then_some("xdg-open")
    }
}
