#!/usr/bin/env bash
# Builds the optional native BLAKE3 library (official C sources from Debian's librust-blake3-dev,
# with the x86-64 SSE/AVX assembly) that n2s loads with Deno.dlopen. Idempotent: does nothing
# when the library is already built from the same sources. Without it n2s uses hash-wasm.
set -euo pipefail
cd "$(dirname "$0")/../.."
# OpenSSL's libcrypto and libzstd are loaded through FFI too (ChaCha20-Poly1305 and zstd); they
# are part of every Debian system, but make sure.
if ! ldconfig -p | grep -q 'libcrypto.so.3 ' || ! ldconfig -p | grep -q 'libzstd.so.1 '; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl3 libzstd1 >/dev/null
  else
    echo "perf.sh: libssl3 or libzstd1 missing; n2s will use node:crypto and node:zlib" >&2
  fi
fi
OUT="${N2S_BLAKE3_LIB:-/usr/local/lib/n2s/libblake3.so}"
[ -f "$OUT" ] && [ "$OUT" -nt lib/format/native/b3wrap.c ] && exit 0
if ! ls /usr/share/cargo/registry/blake3-*/c/blake3.c >/dev/null 2>&1 || ! command -v gcc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librust-blake3-dev gcc >/dev/null
  else
    echo "perf.sh: librust-blake3-dev or gcc missing; n2s will use hash-wasm" >&2
    exit 0
  fi
fi
C=$(ls -d /usr/share/cargo/registry/blake3-*/c | sort -V | tail -1)
mkdir -p "$(dirname "$OUT")"
ASM=()
if [ "$(uname -m)" = x86_64 ]; then
  ASM=("$C"/blake3_sse2_x86-64_unix.S "$C"/blake3_sse41_x86-64_unix.S
    "$C"/blake3_avx2_x86-64_unix.S "$C"/blake3_avx512_x86-64_unix.S)
  DEFS=()
else
  DEFS=(-DBLAKE3_NO_SSE2 -DBLAKE3_NO_SSE41 -DBLAKE3_NO_AVX2 -DBLAKE3_NO_AVX512)
fi
gcc -O3 -shared -fPIC "${DEFS[@]}" -I"$C" -o "$OUT.tmp" lib/format/native/b3wrap.c \
  "$C"/blake3.c "$C"/blake3_dispatch.c "$C"/blake3_portable.c "${ASM[@]}"
mv "$OUT.tmp" "$OUT"
echo "perf.sh: built $OUT"
