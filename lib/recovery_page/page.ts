// The offline recovery page and where a repository keeps its copy.

export { RECOVERY_PAGE_HTML } from "./page.generated.ts";

/** Object key of the recovery page in every repository (plaintext HTML, no secrets). */
export const RECOVERY_PAGE_KEY = "recovery.html";
