// The offline recovery page and where a repository keeps its copy.

export { RECOVERY_PAGE_HTML } from "./page.generated.ts";

export { RECOVERY_PAGE_KEY } from "../repository/layout.ts";
