//! One client of a proxy: wait for a route, connect to a backend, relay until either side ends or
//! the backend leaves the route list.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Shared;

type Routes = watch::Receiver<Vec<SocketAddr>>;

pub(super) async fn serve_client(
    shared: Arc<Shared>,
    mut routes: Routes,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let stats = &shared.stats;
    let proxy = shared.name.as_str();
    let _active = stats.accepted();
    let Some(candidates) = routed_backends(&shared, &mut routes).await else {
        stats.no_route();
        info!(%proxy, %peer, wait = ?shared.wait_for_route, "no backend routed; closing the client");
        return;
    };
    let Some((backend_addr, mut backend)) = connect_any(&shared, &candidates).await else {
        stats.no_route();
        warn!(%proxy, %peer, backends = ?candidates, "no routed backend reachable; closing the client");
        return;
    };
    stats.routed(backend_addr);
    for (side, stream) in [("client", &client), ("backend", &backend)] {
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%proxy, %peer, %side, %error, "could not set TCP_NODELAY");
        }
    }
    debug!(%proxy, %peer, backend = %backend_addr, "relaying");

    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    let mut copy = std::pin::pin!(copy);
    loop {
        tokio::select! {
            copied = &mut copy => {
                match copied {
                    Ok((up, down)) => debug!(%proxy, %peer, backend = %backend_addr, up, down, "connection ended"),
                    Err(error) => debug!(%proxy, %peer, backend = %backend_addr, %error, "connection failed"),
                }
                return;
            }
            changed = routes.changed() => {
                // A closed channel means nobody keeps the routes current any more: fail closed.
                let still_routed =
                    changed.is_ok() && routes.borrow_and_update().contains(&backend_addr);
                if !still_routed {
                    stats.closed_on_route_change();
                    info!(%proxy, %peer, backend = %backend_addr, "backend left the routes; closing the connection");
                    return;
                }
            }
        }
    }
}

/// The current route list, or the first non-empty one published within the wait. `None` when the
/// wait ran out or the route publisher is gone.
async fn routed_backends(shared: &Shared, routes: &mut Routes) -> Option<Vec<SocketAddr>> {
    if routes.has_changed().is_err() {
        warn!(proxy = %shared.name, "route publisher is gone; refusing clients");
        return None;
    }
    {
        let current = routes.borrow_and_update();
        if !current.is_empty() {
            return Some(current.clone());
        }
    }
    let _waiting = shared.stats.waiting();
    debug!(proxy = %shared.name, wait = ?shared.wait_for_route, "no backend routed; waiting");
    let appeared =
        tokio::time::timeout(shared.wait_for_route, routes.wait_for(|r| !r.is_empty())).await;
    match appeared {
        Ok(Ok(list)) => Some(list.clone()),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Connect to the next backend in round-robin order; if that fails, try each other one once.
async fn connect_any(
    shared: &Shared,
    candidates: &[SocketAddr],
) -> Option<(SocketAddr, TcpStream)> {
    let start = shared.next.fetch_add(1, Ordering::Relaxed) % candidates.len().max(1);
    let order = candidates.iter().cycle().skip(start).take(candidates.len());
    for &backend in order {
        match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(stream)) => return Some((backend, stream)),
            Ok(Err(error)) => {
                shared.stats.connect_failed();
                warn!(proxy = %shared.name, %backend, %error, "could not connect to backend");
            }
            Err(_) => {
                shared.stats.connect_failed();
                warn!(proxy = %shared.name, %backend, timeout = ?shared.connect_timeout, "backend did not accept in time");
            }
        }
    }
    None
}
