//! Small network pieces: a minimal HTTP/1.1 server and client for agent status, and TCP endpoints.

mod accept;
pub mod http;
pub mod proxy;
