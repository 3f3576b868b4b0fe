//! A daemon library's `run` (the tracker's, the visualizer's) serving inside the test process
//! on a free loopback port, for tests that need no separate process.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A `run(listener, shutdown)` serving a port-0 listener in this process; cancelled when dropped.
pub struct InProcess {
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Binds a free loopback port and spawns `run` on it.
    pub async fn start<F>(run: impl FnOnce(TcpListener, CancellationToken) -> F) -> InProcess
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("bound address").to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, shutdown.clone()));
        InProcess {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Cancels it and checks that `run` returns `Ok` within `limit`.
    pub async fn stop(mut self, limit: Duration) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(limit, task)
                .await
                .unwrap_or_else(|_| panic!("run returns within {limit:?} of cancellation"))
                .expect("run does not panic");
            result.expect("run returns Ok");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
