//! The node's clients:
//! - [`cli`]: the `zkfabric` command line, which runs a local node's stages or reaches a
//!   remote one;
//! - [`remote`]: a gRPC client of a node, for the CLI's `--remote` and the examples;
//! - [`demo`]: the demo's data and questions;
//! - [`chart`]: a verified answer drawn as an SVG bar chart (`--chart`).

pub mod chart;
pub mod cli;
pub mod demo;
pub mod remote;
