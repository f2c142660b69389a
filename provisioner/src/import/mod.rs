//! Importers that turn other tools' node lists into nodes to add: ISC dhcpd
//! `host` blocks, `/etc/ethers`, and Warewulf 4 `nodes.conf`. Each returns
//! the nodes in file order plus warnings; errors name the file and line.

pub mod dhcpd;
pub mod ethers;
pub mod warewulf;

use crate::db::NewNode;

/// What an importer read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Nodes to add, in file order.
    pub nodes: Vec<NewNode>,
    /// Things skipped or ignored, with file and line.
    pub warnings: Vec<String>,
}

/// The importers by the name `vnfs node import KIND` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ISC dhcpd.conf host blocks.
    Dhcpd,
    /// /etc/ethers.
    Ethers,
    /// Warewulf 4 nodes.conf.
    Warewulf,
}

/// Runs the importer for `kind` on a file.
pub fn read(kind: Kind, path: &std::path::Path) -> crate::Result<Imported> {
    let text = crate::fsutil::read_text(path)?;
    match kind {
        Kind::Dhcpd => dhcpd::parse(path, &text),
        Kind::Ethers => ethers::parse(path, &text),
        Kind::Warewulf => warewulf::parse(path, &text),
    }
}
