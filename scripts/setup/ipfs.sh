#!/usr/bin/env bash
# Installs the IPFS test node: js-ipfs 0.66.1 from npm (Kubo cannot be installed on machines that
# reach only the npm registry), from the committed lock in tests/servers/jsipfs, into the
# git-ignored .cache/jsipfs. The overrides in that package.json pin dependencies that js-ipfs's
# ranges now resolve to incompatible versions. Idempotent: skips when the installed tree was built
# from the same package.json and lock (compared by hash).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=tests/servers/jsipfs
DEST=.cache/jsipfs
command -v npm >/dev/null || {
  echo "ipfs.sh: npm is missing; install Node.js and npm (apt-get install npm)" >&2
  exit 1
}
HASH=$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -x "$DEST/node_modules/.bin/jsipfs" ] && [ "$(cat "$DEST/.installed-hash" 2>/dev/null)" = "$HASH" ]; then
  exit 0
fi
mkdir -p "$DEST"
rm -f "$DEST/.installed-hash"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
# Optional dependencies (electron-webrtc and friends) download from GitHub and are not needed.
(cd "$DEST" && npm ci --omit=optional --no-audit --no-fund --loglevel=error)
echo "$HASH" >"$DEST/.installed-hash"
echo "ipfs.sh: installed js-ipfs into $DEST"
