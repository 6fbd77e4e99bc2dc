#!/bin/sh
# Installs what the client tests need: btrfs-progs (mkfs.btrfs, btrfs send/receive), zfs-fuse
# (real ZFS pools, snapshots and clones without a kernel module) and lz4 (dsg's archives).
# Idempotent: installs only what is missing. The tests also need root (loop devices, mounts)
# and /dev/fuse for zfs-fuse.
set -eu

missing=""
command -v mkfs.btrfs >/dev/null 2>&1 || missing="$missing btrfs-progs"
command -v zpool >/dev/null 2>&1 || missing="$missing zfs-fuse"
command -v lz4 >/dev/null 2>&1 || missing="$missing lz4"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
