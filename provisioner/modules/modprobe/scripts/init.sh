# modprobe: load the configured kernel modules now, and have the image load
# them too (modules-load.d). One module per word; '#' starts a comment.
mods=$(printf '%s\n' "$VNFS_MODULES" | sed -e 's/#.*//' | tr -s ' \t' '\n\n' | grep -v '^$' || true)
[ -z "$mods" ] && exit 0
mkdir -p "$DESTDIR/etc/modules-load.d"
printf '%s\n' "$mods" > "$DESTDIR/etc/modules-load.d/vnfs-modprobe.conf"
for m in $mods; do
    ${VNFS_MODPROBE:-modprobe} "$m" || echo "modprobe: could not load $m" >&2
done
