//! The Kubernetes runtime: members as pods, endpoints as Services, the one-writer Lease.

pub mod agent_config;
pub mod apply;
pub mod builders;
pub mod certificates;
pub mod controller;
pub mod error;
mod health;
pub mod labels;
pub mod metrics;
pub mod names;
pub mod own_image;
pub mod report;
pub mod volumes;
pub mod world;

#[cfg(test)]
mod reconcile_tests;
