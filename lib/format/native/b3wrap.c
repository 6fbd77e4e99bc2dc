/* A flat C ABI over the official BLAKE3 C implementation, for Deno.dlopen. The hasher state
 * lives in memory owned by the caller (b3_state_size bytes, 8-byte aligned). */
#include <string.h>
#include "blake3.h"

size_t b3_state_size(void) { return sizeof(blake3_hasher); }
void b3_init(void *state) { blake3_hasher_init((blake3_hasher *)state); }
void b3_update(void *state, const void *data, size_t len) {
  blake3_hasher_update((blake3_hasher *)state, data, len);
}
void b3_final(void *state, uint8_t *out) {
  blake3_hasher_finalize((blake3_hasher *)state, out, BLAKE3_OUT_LEN);
  blake3_hasher_init((blake3_hasher *)state);
}
void b3_hash(const void *data, size_t len, uint8_t *out) {
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
}
void b3_derive_key(const char *context, size_t context_len, const void *material, size_t len,
                   uint8_t *out) {
  blake3_hasher h;
  blake3_hasher_init_derive_key_raw(&h, context, context_len);
  blake3_hasher_update(&h, material, len);
  blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
}
