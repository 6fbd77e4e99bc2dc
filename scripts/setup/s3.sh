#!/usr/bin/env bash
# The S3 backend tests' server: s3rver from the committed tests/servers/s3rver/package.json and
# lock file, installed into the git-ignored .cache/s3rver. Skipped when the installed copy was
# made from the same lock file (its hash is kept beside it).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=tests/servers/s3rver
DEST=.cache/s3rver
if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm
fi
want=$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -x "$DEST/node_modules/.bin/s3rver" ] && [ "$(cat "$DEST/.lock-hash" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
(cd "$DEST" && npm ci --no-audit --no-fund --silent)
echo "$want" >"$DEST/.lock-hash"
