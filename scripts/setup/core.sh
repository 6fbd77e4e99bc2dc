#!/usr/bin/env bash
# Dependencies of the core tests: python3 is the independent oracle the exact-restore tests compare
# trees with (os.lstat, os.listxattr on raw byte names); the npm packages the code imports are
# fetched by Deno itself, and this warms Deno's cache so that the first test does not pay for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v python3 >/dev/null 2>&1; then
  SUDO=
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3
fi
deno cache mod.ts cli.ts
