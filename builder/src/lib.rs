//! Recipes to commits: package sources, resolver, fetch cache, chroot steps, normalisation and image rendering.
