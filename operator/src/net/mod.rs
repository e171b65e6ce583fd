//! Network pieces: HTTPS between the brain and the agents, the TCP endpoints, and ports.

mod accept;
pub mod http;
pub mod ports;
pub mod proxy;
