#!/bin/sh
# A FUSE overlay that corrupts its own layers: it writes into a layer behind the suite's
# back, then mounts fuse-overlayfs (before the mount, so the result does not race the
# suite's first look) (a real driver bug class: a daemon that touches a lower layer, or
# leaves debris in its upper one). Used by tests/test_corrupt_layers.py only.
#   usage: corrupting-fuse-overlayfs.sh lower|upper LOWERDIR UPPERDIR WORKDIR MOUNTPOINT OPTIONS
set -eu
mode=$1 lower=$2 upper=$3 work=$4 mnt=$5 opts=$6
case $mode in
lower) printf 'planted' >"${lower%%:*}/zz" ;;   # the top lower layer gains a file
upper) mkfifo "$upper/zz" ;;                    # the upper layer gains a FIFO nobody made
esac
exec fuse-overlayfs -o "lowerdir=$lower,upperdir=$upper,workdir=$work$opts" "$mnt"
