# syncnodes: remember which configuration this node was provisioned with.
mkdir -p "$DESTDIR/etc/vnfs"
printf '%s\n' "$NODE_CONFIG_HASH" > "$DESTDIR/etc/vnfs/config-hash"
