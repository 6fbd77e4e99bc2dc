#!/usr/bin/env bash
# Dependencies of the core tests: python3 is the independent oracle the exact-restore tests compare
# trees with (os.lstat, os.listxattr on raw byte names); zsh and fish run the completion scripts,
# groff and man render the man page; the npm packages the code imports are
# fetched by Deno itself, and this warms Deno's cache so that the first test does not pay for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for tool in python3 zsh fish groff man; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  pkgs=()
  for tool in "${missing[@]}"; do
    case "$tool" in man) pkgs+=(man-db) ;; *) pkgs+=("$tool") ;; esac
  done
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
deno cache mod.ts cli.ts
