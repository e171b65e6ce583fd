//! Table tests of the builders, from the repository's example clusters.

mod fixtures;
mod objects;
mod owners;
mod pod;
