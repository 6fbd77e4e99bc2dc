/** The version of n2s (the same as in deno.json; a test keeps them equal). */
export const VERSION = "0.1.0";

/** When this version was made, for the man page. */
export const RELEASED = "2026-12-02";
