# groupfile: /etc/group from the master's fragments (all first, then group,
# vnfs and node). Nothing configured: leave the image's file alone.
if [ -z "$VNFS_GROUP" ]; then
    echo "groupfile: no fragments configured for $NODE_HOSTNAME; /etc/group unchanged" >&2
    exit 0
fi
mkdir -p "$DESTDIR/etc"
printf '%s' "$VNFS_GROUP" > "$DESTDIR/etc/group.vnfs-tmp"
chmod 644 "$DESTDIR/etc/group.vnfs-tmp"
mv -f "$DESTDIR/etc/group.vnfs-tmp" "$DESTDIR/etc/group"
