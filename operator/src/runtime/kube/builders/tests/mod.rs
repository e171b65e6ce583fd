//! Table tests of the builders, from the repository's example clusters.

mod fixtures;
mod network;
mod objects;
mod owners;
mod pod;
