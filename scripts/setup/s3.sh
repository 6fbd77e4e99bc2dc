#!/usr/bin/env bash
# The S3 backend tests' servers, each from its committed package.json and lock file under
# tests/servers/, installed into the git-ignored .cache/: s3rver (run by node) and fauxqs, a
# second, independent S3 implementation (run by Deno, since it needs node:sqlite). An install
# is skipped when it was made from the same package.json and lock file (their hash is kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm
fi
install() { # name
  local src="tests/servers/$1" dest=".cache/$1" want
  want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ -d "$dest/node_modules/$1" ] && [ "$(cat "$dest/.lock-hash" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$src/package.json" "$src/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --silent)
  echo "$want" >"$dest/.lock-hash"
}
install s3rver
install fauxqs
