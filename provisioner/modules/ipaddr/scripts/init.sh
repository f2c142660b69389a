# ipaddr: one configuration per device entry of NODE_IPADDR
# (DEV:ADDR/PREFIX[/GATEWAY]); entries without a device are DHCP's.
# ifupdown when the image has /etc/network, systemd-networkd otherwise.
for entry in $NODE_IPADDR; do
    dev=${entry%%:*}
    [ "$dev" = "$entry" ] && continue
    rest=${entry#*:}
    addr=${rest%%/*}
    tail=${rest#*/}
    prefix=${tail%%/*}
    gw=
    case "$tail" in */*) gw=${tail#*/} ;; esac
    if [ -d "$DESTDIR/etc/network" ]; then
        mkdir -p "$DESTDIR/etc/network/interfaces.d"
        f="$DESTDIR/etc/network/interfaces.d/vnfs-$dev"
        {
            printf 'auto %s\n' "$dev"
            printf 'iface %s inet static\n' "$dev"
            printf '    address %s/%s\n' "$addr" "$prefix"
            [ -n "$gw" ] && printf '    gateway %s\n' "$gw"
            true
        } > "$f"
    else
        mkdir -p "$DESTDIR/etc/systemd/network"
        f="$DESTDIR/etc/systemd/network/10-vnfs-$dev.network"
        {
            printf '[Match]\nName=%s\n\n[Network]\nAddress=%s/%s\n' "$dev" "$addr" "$prefix"
            [ -n "$gw" ] && printf 'Gateway=%s\n' "$gw"
            true
        } > "$f"
    fi
done
