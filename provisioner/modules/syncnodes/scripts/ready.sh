# syncnodes: reboot into a fresh provision when the configuration changed,
# but never under a user's feet (any process of a uid >= 1000 blocks it).
booted=$(cat "$DESTDIR/etc/vnfs/config-hash" 2>/dev/null || true)
[ "$booted" = "$NODE_CONFIG_HASH" ] && exit 0
proc=${VNFS_PROC:-/proc}
for status in "$proc"/[0-9]*/status; do
    [ -r "$status" ] || continue
    uid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "$status")
    if [ -n "$uid" ] && [ "$uid" -ge 1000 ] && [ "$uid" -ne 65534 ]; then
        echo "syncnodes: configuration of $NODE_HOSTNAME changed but user processes run (uid $uid); not rebooting" >&2
        exit 0
    fi
done
echo "syncnodes: configuration of $NODE_HOSTNAME changed; rebooting to reprovision" >&2
${VNFS_REBOOT:-reboot}
