#!/usr/bin/env bash
# Dependencies of the core tests: the npm packages the code imports are fetched by Deno itself;
# this warms Deno's cache so that the first test does not pay for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
deno cache mod.ts cli.ts
