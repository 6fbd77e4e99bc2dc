// Argument checks at the library's public entry points: a null or mistyped argument is a
// TypeError naming the function and the argument, not a property read failing deep inside.

/** What a value is, for messages: "null", "undefined", "an array", "a number 3". */
function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `the string ${JSON.stringify(v.slice(0, 40))}`;
  if (typeof v === "number" || typeof v === "boolean") return `the ${typeof v} ${v}`;
  return `a ${typeof v}`;
}

function fail(where: string, name: string, wanted: string, v: unknown): never {
  throw new TypeError(`${where}: ${name} must be ${wanted}, not ${describe(v)}`);
}

/** A plain object (options); returns it typed as a record for the field checks. */
export function object(where: string, name: string, v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(where, name, "an object", v);
  return v as Record<string, unknown>;
}

/** An object or undefined. */
export function optionalObject(
  where: string,
  name: string,
  v: unknown,
): Record<string, unknown> | undefined {
  return v === undefined ? undefined : object(where, name, v);
}

/** A non-empty string. */
export function string(where: string, name: string, v: unknown): string {
  if (typeof v !== "string" || v === "") fail(where, name, "a non-empty string", v);
  return v;
}

/** A string (empty allowed) or undefined. */
export function optionalString(where: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== "string") fail(where, name, "a string", v);
}

/** A boolean or undefined. */
export function optionalBoolean(where: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== "boolean") fail(where, name, "a boolean", v);
}

/** A function. */
export function func(where: string, name: string, v: unknown): void {
  if (typeof v !== "function") fail(where, name, "a function", v);
}

/** A function or undefined. */
export function optionalFunction(where: string, name: string, v: unknown): void {
  if (v !== undefined) func(where, name, v);
}

/** An integer of at least `min`, or undefined. */
export function optionalInteger(where: string, name: string, v: unknown, min: number): void {
  if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < min)) {
    fail(where, name, `an integer of at least ${min}`, v);
  }
}

/** A finite number in [min, max], or undefined. */
export function optionalNumber(
  where: string,
  name: string,
  v: unknown,
  min: number,
  max: number,
): void {
  if (v !== undefined && (typeof v !== "number" || !(v >= min && v <= max))) {
    fail(where, name, `a number from ${min} to ${max}`, v);
  }
}

/** An array of strings. */
export function strings(where: string, name: string, v: unknown): void {
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
    fail(where, name, "an array of strings", v);
  }
}

/** An array of strings, or undefined. */
export function optionalStrings(where: string, name: string, v: unknown): void {
  if (v !== undefined) strings(where, name, v);
}

/** One of `values`. */
export function oneOf(where: string, name: string, v: unknown, values: readonly string[]): void {
  if (!values.includes(v as string)) {
    fail(where, name, `one of ${values.map((s) => JSON.stringify(s)).join(", ")}`, v);
  }
}

/** One of `values`, or undefined. */
export function optionalOneOf(
  where: string,
  name: string,
  v: unknown,
  values: readonly string[],
): void {
  if (v !== undefined) oneOf(where, name, v, values);
}

/** A value with the given methods (a Client, a Backend, a Runner). */
export function withMethods(
  where: string,
  name: string,
  v: unknown,
  what: string,
  methods: readonly string[],
): void {
  const o = object(where, name, v);
  for (const m of methods) {
    if (typeof o[m] !== "function") {
      throw new TypeError(`${where}: ${name} must be ${what}, with a ${m}() method`);
    }
  }
}
