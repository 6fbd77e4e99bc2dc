#!/usr/bin/env bash
# Dependencies of the recovery tests: Debian's chromium (the recovery page is tested in a real
# browser) and playwright-core from npm to drive it, in the git-ignored .cache/playwright.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
PW_VERSION=1.65.1
if [ "$(node -p "require('./.cache/playwright/node_modules/playwright-core/package.json').version" 2>/dev/null)" != "$PW_VERSION" ]; then
  npm install --silent --no-audit --no-fund --prefix .cache/playwright "playwright-core@$PW_VERSION"
fi
