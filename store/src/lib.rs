//! Content-addressed repository of image trees: chunking, objects, packs, refs, diff, gc, fsck and checkout.
