//! One module per command group. Each exposes clap argument types and a
//! `run` function; none holds logic a library user would need.

pub mod capsule;
pub mod generate;
pub mod image;
pub mod store;
