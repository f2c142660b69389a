//! `vnfs mount` end to end, through the `vnfs` binary as a user runs it:
//! the mount's life cycle and its refusals (`lifecycle`), and the mount as
//! a root file system that dpkg, apt-get, useradd and `make install` use
//! (`root`). Needs root and /dev/fuse; fails (never skips) without them.

mod common;
mod lifecycle;
mod root;
