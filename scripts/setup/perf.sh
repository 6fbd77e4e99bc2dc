#!/usr/bin/env bash
# Makes sure the system libraries that n2s loads through FFI are present: OpenSSL's libcrypto
# (ChaCha20-Poly1305) and libzstd. Both are part of every Debian system; without them n2s uses
# node:crypto and node:zlib. BLAKE3 needs no build: its native addon (@napi-rs/blake-hash) comes
# from npm like n2s's other dependencies; this only fetches it ahead of first use. Idempotent.
set -euo pipefail
if ! ldconfig -p | grep -q 'libcrypto.so.3 ' || ! ldconfig -p | grep -q 'libzstd.so.1 '; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl3 libzstd1 >/dev/null
  else
    echo "perf.sh: libssl3 or libzstd1 missing; n2s will use node:crypto and node:zlib" >&2
  fi
fi
# Deno fetches the BLAKE3 addon on first use (it is outside the static module graph, so
# `deno cache` does not); fetch it now, and say so when it cannot load here.
cd "$(dirname "$0")/../.."
if ! deno eval --quiet 'const s = "@napi-rs/blake-hash"; await import(s);' >/dev/null 2>&1; then
  echo "perf.sh: @napi-rs/blake-hash does not load here; n2s will hash with hash-wasm" >&2
fi
