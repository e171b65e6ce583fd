//! The accept loop shared by the HTTP server and the TCP proxy: one task per connection, stop
//! accepting on shutdown, then give connections a bounded grace before aborting them.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Pause after a failed `accept` (for example too many open files) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Accept connections until `shutdown` completes, running `on_connection` for each in its own task.
///
/// After shutdown the listener is closed at once; connections still running get `grace` to end by
/// themselves and are aborted after that (a zero grace aborts them immediately).
pub(crate) async fn accept_until<S, C, Fut>(
    what: &str,
    listener: TcpListener,
    shutdown: S,
    grace: Duration,
    mut on_connection: C,
) where
    S: Future<Output = ()>,
    C: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(on_connection(stream, peer));
                }
                Err(error) => {
                    warn!(%what, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    if error.is_panic() {
                        warn!(%what, %error, "connection task panicked");
                    }
                }
            }
        }
    }
    drop(listener);
    debug!(%what, in_flight = connections.len(), "stopped accepting");
    if !grace.is_zero() && !connections.is_empty() {
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            debug!(%what, left = connections.len(), "aborting connections after the grace period");
        }
    }
    connections.shutdown().await;
}
