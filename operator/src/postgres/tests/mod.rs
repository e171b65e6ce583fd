//! Tests against real PostgreSQL servers on loopback (see [`super::testing`]).

mod process;
mod single_server;
mod streaming;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
