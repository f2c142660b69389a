# passwdfile: /etc/passwd from the master's fragments (all first, then group,
# vnfs and node). Nothing configured: leave the image's file alone.
if [ -z "$VNFS_PASSWD" ]; then
    echo "passwdfile: no fragments configured for $NODE_HOSTNAME; /etc/passwd unchanged" >&2
    exit 0
fi
mkdir -p "$DESTDIR/etc"
printf '%s' "$VNFS_PASSWD" > "$DESTDIR/etc/passwd.vnfs-tmp"
chmod 644 "$DESTDIR/etc/passwd.vnfs-tmp"
mv -f "$DESTDIR/etc/passwd.vnfs-tmp" "$DESTDIR/etc/passwd"
