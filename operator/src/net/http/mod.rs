//! HTTP for agent endpoints, on hyper: the server (plain for the operator's own probes and metrics,
//! TLS with optional client certificates for agents) and one pooled TLS client for the brain
//! (ADR 0005). Both sides cap bodies at [`MAX_BODY_BYTES`] and keep connections alive.

mod brain;
mod client;
mod message;
mod server;

#[cfg(test)]
mod tests;

pub use brain::BrainClient;
pub use client::{AgentClient, HttpError, Target};
pub use message::{Request, Response};
pub use server::{serve, serve_with, ServeOptions};

/// Largest request or response body either side accepts (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
