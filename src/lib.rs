//! Test support shared by the workspace's examples, integration tests and benchmarks: a
//! scripted origin server on 127.0.0.1 and a clock stepped by hand.
//!
//! It is not published; the crates live in `crates/`.

pub mod answer;
pub mod clock;
pub mod origin;
