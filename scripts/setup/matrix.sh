#!/usr/bin/env bash
# Dependencies of the failure matrices (tests/matrix/): GNU time measures each fuzzed command's
# peak memory (/usr/bin/time -f %M) and coreutils' timeout is the hang watchdog.
set -euo pipefail
if [ ! -x /usr/bin/time ] || ! command -v timeout >/dev/null 2>&1; then
  SUDO=
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  install() {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      time coreutils >/dev/null
  }
  install || { $SUDO apt-get update -qq && install; }
fi
