#!/usr/bin/env bash
# Installs rclone (Debian's package) for the rclone backend and its tests, and fuse for the local
# backend's test (which mounts a repository with rclone mount), when they are missing. Waits for
# the dpkg lock rather than failing when another setup step is installing packages.
set -euo pipefail

pkgs=()
command -v rclone >/dev/null 2>&1 || pkgs+=(rclone)
command -v fusermount >/dev/null 2>&1 || pkgs+=(fuse)
[ ${#pkgs[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${pkgs[@]}"
}
# The package lists are normally fresh (CI runs apt-get update); refresh them only when the
# install cannot find the package.
install || { $SUDO apt-get update -qq -o DPkg::Lock::Timeout=300 && install; }
