// The checks N2S runs on its arguments before it opens or reads anything (see lib/args.ts).

import * as arg from "./args.ts";
import { OVERWRITE_RULES } from "./pull/overwrite.ts";

const BACKEND_METHODS = ["put", "get", "stat", "list", "delete", "flush", "close"] as const;

/** The options of N2S.open (and the part of N2S.init's they share). */
export function checkOpenOptions(where: string, v: unknown): void {
  const o = arg.object(where, "options", v);
  if (o.backend === undefined) arg.string(where, "options.repository", o.repository);
  else {
    arg.optionalString(where, "options.repository", o.repository);
    arg.withMethods(where, "options.backend", o.backend, "a Backend", BACKEND_METHODS);
  }
  arg.optionalObject(where, "options.backendOptions", o.backendOptions);
  arg.optionalString(where, "options.index", o.index);
  if (o.passphrase !== undefined && typeof o.passphrase !== "function") {
    arg.optionalString(where, "options.passphrase", o.passphrase);
  }
  arg.optionalObject(where, "options.suite", o.suite);
}

/** The options of N2S.init. */
export function checkInitOptions(where: string, v: unknown): void {
  checkOpenOptions(where, v);
  const o = v as Record<string, unknown>;
  arg.string(where, "options.passphrase", o.passphrase);
  arg.optionalString(where, "options.label", o.label);
  arg.optionalInteger(where, "options.logN", o.logN, 1);
  arg.optionalInteger(where, "options.packSize", o.packSize, 1);
  arg.optionalInteger(where, "options.packThreshold", o.packThreshold, 1);
}

/** A client: what a push reads entries and content from. */
export function checkClient(where: string, name: string, v: unknown): void {
  arg.withMethods(where, name, v, "a Client", ["entries"]);
  const c = v as Record<string, unknown>;
  arg.string(where, `${name}.kind`, c.kind);
  arg.string(where, `${name}.root`, c.root);
  arg.strings(where, `${name}.completeWithin`, c.completeWithin);
  arg.optionalFunction(where, `${name}.open`, c.open);
}

/** The options of a push. */
export function checkPushOptions(where: string, v: unknown): void {
  const o = arg.object(where, "options", v);
  checkClient(where, "options.client", o.client);
  arg.string(where, "options.source", o.source);
  arg.optionalString(where, "options.name", o.name);
  arg.optionalInteger(where, "options.concurrency", o.concurrency, 1);
  arg.optionalInteger(where, "options.compressLevel", o.compressLevel, 0);
  arg.optionalInteger(where, "options.confirmBatch", o.confirmBatch, 1);
  arg.optionalFunction(where, "options.onProgress", o.onProgress);
  arg.optionalObject(where, "options.lock", o.lock);
}

/** The options of a resume. */
export function checkResumeOptions(where: string, v: unknown): void {
  const o = arg.object(where, "options", v);
  arg.optionalString(where, "options.source", o.source);
  arg.optionalInteger(where, "options.concurrency", o.concurrency, 1);
  arg.optionalFunction(where, "options.onProgress", o.onProgress);
  arg.optionalObject(where, "options.lock", o.lock);
}

/** The options of a pull. */
export function checkPullOptions(where: string, v: unknown): void {
  const o = arg.object(where, "options", v);
  arg.optionalStrings(where, "options.patterns", o.patterns);
  arg.optionalInteger(where, "options.concurrency", o.concurrency, 1);
  arg.optionalFunction(where, "options.onProgress", o.onProgress);
  arg.optionalBoolean(where, "options.owner", o.owner);
  arg.optionalObject(where, "options.lock", o.lock);
  arg.optionalOneOf(where, "options.overwrite", o.overwrite, OVERWRITE_RULES);
  arg.optionalBoolean(where, "options.dryRun", o.dryRun);
}
