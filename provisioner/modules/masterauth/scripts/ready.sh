# masterauth: the master's accounts, without passwords (no shadow file).
mkdir -p "$DESTDIR/etc"
printf '%s' "$VNFS_PASSWD" > "$DESTDIR/etc/passwd.vnfs-tmp"
chmod 644 "$DESTDIR/etc/passwd.vnfs-tmp"
mv -f "$DESTDIR/etc/passwd.vnfs-tmp" "$DESTDIR/etc/passwd"
printf '%s' "$VNFS_GROUP" > "$DESTDIR/etc/group.vnfs-tmp"
chmod 644 "$DESTDIR/etc/group.vnfs-tmp"
mv -f "$DESTDIR/etc/group.vnfs-tmp" "$DESTDIR/etc/group"
