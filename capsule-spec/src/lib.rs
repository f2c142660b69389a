//! VNFS image metadata and the .vnfs capsule file format.
