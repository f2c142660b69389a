//! The Debian package source: apt sources, signed indexes, control files,
//! dpkg version ordering, dependency resolution, `.deb` reading and
//! installation into an image root.

pub mod control;
pub mod deb;
pub mod inrelease;
pub mod install;
pub mod ownership;
pub mod packages;
pub mod repo;
pub mod resolve;
pub mod sources;
pub mod version;
