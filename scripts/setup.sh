#!/usr/bin/env bash
# Installs what the tests need and is not there yet (Debian packages, npm packages for the test
# servers, Deno's module cache). Every step checks first, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
for s in scripts/setup/*.sh; do
  [ -f "$s" ] || continue
  bash "$s"
done
