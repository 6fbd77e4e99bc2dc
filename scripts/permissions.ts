/** The permissions the n2s command runs with (the `n2s` task, the installed command, the executable). */
export const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-net",
  "--allow-sys",
  "--allow-ffi",
];
