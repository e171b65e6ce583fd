//! Ports for servers that bind later than the port is chosen (PostgreSQL binds seconds after, and
//! again at every restart). They are taken below the kernel's ephemeral range: a port from that
//! range can be the local end of any outgoing connection (the brain's keep-alive connections to
//! the agents, clients), and PostgreSQL would then fail with "Address already in use" for as long
//! as that connection lives.

use std::io;
use std::net::TcpListener;

/// Lowest port handed out.
const FIRST: u16 = 20_000;

/// The kernel's ephemeral range (Linux default 32768–60999).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// A port on `host` that nobody listens on now, below the ephemeral range when there is room
/// (from a random start, so that clusters set up at the same time rarely pick the same one).
pub fn free_port(host: &str) -> io::Result<u16> {
    let (low, _) = ephemeral_range();
    let span = low.saturating_sub(FIRST);
    if span >= 1_000 {
        let mut seed = [0u8; 2];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let start = u16::from_le_bytes(seed) % span;
        for i in 0..span {
            let port = FIRST + (start + i) % span;
            if TcpListener::bind((host, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    TcpListener::bind((host, 0))?.local_addr().map(|a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        for _ in 0..20 {
            let port = free_port("127.0.0.1").expect("a port");
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{port} free"
            );
            if low >= FIRST + 1_000 {
                assert!((FIRST..low).contains(&port), "{port} not in {FIRST}..{low}");
            }
            assert!(!(low..=high).contains(&port) || low < FIRST + 1_000);
        }
    }
}
