//! A minimal HTTP/1.1 server and client for agent endpoints on loopback and pod networks.
//!
//! Every exchange is one request on one connection: the server always answers with
//! `Connection: close`, bodies are `Content-Length` only (no chunked encoding), and both sides cap
//! bodies at [`MAX_BODY_BYTES`].

mod client;
mod message;
mod server;
mod wire;

#[cfg(test)]
mod tests;

pub use client::{get, get_json, send_json, HttpError};
pub use message::{Request, Response};
pub use server::{serve, serve_with, ServeOptions};

/// Largest request or response body either side accepts (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
