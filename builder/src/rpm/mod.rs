//! RPM sources (`[source.rpm]`): local RPM files and yum/dnf repositories,
//! dependency resolution with rpm's version semantics, payload unpacking
//! with owners and capabilities, `%pre`/`%post` scriptlets, and the
//! image's rpm database.
//!
//! Inside this module the `rpm` crate is always written `::rpm`, so it is
//! never confused with this module.

pub mod build;
pub mod caps;
pub mod install;
pub mod layout;
pub mod lock;
pub mod lua;
pub mod modular;
pub mod package;
pub mod pkgfile;
pub mod primary;
pub mod repomd;
pub mod resolve;
pub mod rich;
pub mod rpmdb;
pub mod scriptlets;
pub mod signature;
pub mod source;
pub mod unpack;
pub mod users;
pub mod version;
mod xml;
