# hostname: name the image after the node.
mkdir -p "$DESTDIR/etc"
printf '%s\n' "$NODE_HOSTNAME" > "$DESTDIR/etc/hostname"
# Replace the Debian-style 127.0.1.1 line; keep every other line as it is.
hosts="$DESTDIR/etc/hosts"
tmp="$hosts.vnfs-tmp"
if [ -f "$hosts" ]; then
    grep -v '^127\.0\.1\.1[[:space:]]' "$hosts" > "$tmp" || true
else
    printf '127.0.0.1\tlocalhost\n' > "$tmp"
fi
if [ -n "$DOMAIN" ]; then
    printf '127.0.1.1\t%s.%s %s\n' "$NODE_HOSTNAME" "$DOMAIN" "$NODE_HOSTNAME" >> "$tmp"
else
    printf '127.0.1.1\t%s\n' "$NODE_HOSTNAME" >> "$tmp"
fi
mv -f "$tmp" "$hosts"
