//! Waiting for a condition with a deadline: every wait of the harnesses goes through here, so a
//! test never sleeps for a fixed time where it can ask again.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is asked again.
pub const EVERY: Duration = Duration::from_millis(20);

/// Ask `probe` every [`EVERY`] until it gives a value or `timeout` passes (`None`).
pub async fn until<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// The same from synchronous code (a thread of its own).
pub fn until_blocking<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let asked = Instant::now();
        if let Some(v) = probe() {
            return Some(v);
        }
        if asked >= deadline {
            return None;
        }
        std::thread::sleep(EVERY.saturating_sub(asked.elapsed()));
    }
}
