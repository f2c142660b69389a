//! Recipes to commits: package sources (Debian, RPM, tarballs and
//! directories), dependency resolution, a shared package cache, chroot
//! steps and normalisation. The `vnfs build` command is a thin shell over
//! [`build::build`].

pub mod build;
pub mod cache;
pub mod chroot;
pub mod debian;
pub mod edited;
pub mod fuzzing;
pub mod http;
pub mod image;
pub mod lock;
pub mod normalize;
pub mod pgpkeys;
pub mod pkgdiff;
pub mod progress;
pub mod recipe;
pub mod rpm;
pub mod steps;
pub mod unpack;
