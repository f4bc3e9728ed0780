/**
 * Safe local file names for received media: a sender chooses the file name, so it
 * must never become a path as it is. No separators or control characters, no hidden
 * or special names, and never an existing file.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";

/** The longest name kept, in characters. */
const MAX_NAME = 200;

/**
 * `name` made safe to create inside a folder: separators, `:` and control characters
 * become `_`, leading dots are dropped, and an empty result becomes `fallback`.
 */
export function safeFileName(name: string, fallback: string): string {
  // eslint-disable-next-line no-control-regex
  const cleaned = Array.from(name.replace(/[/\\:\u0000-\u001f\u007f-\u009f]/g, "_"))
    .slice(0, MAX_NAME)
    .join("");
  const trimmed = cleaned.trim().replace(/^\.+/, "");
  return trimmed === "" || /^[_.]*$/.test(trimmed) ? fallback : trimmed;
}

/**
 * A path in `dir` for a received file called `name` (made safe with
 * {@link safeFileName}) that does not exist yet: `name`, then `stem (1).ext`,
 * `stem (2).ext`, ...
 */
export function uniquePath(dir: string, name: string, fallback: string): string {
  const safe = safeFileName(name, fallback);
  const first = join(dir, safe);
  if (!existsSync(first)) return first;
  const dot = safe.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [safe.slice(0, dot), safe.slice(dot)] : [safe, ""];
  for (let n = 1; n < 10_000; n++) {
    const candidate = join(dir, `${stem} (${n})${ext}`);
    if (!existsSync(candidate)) return candidate;
  }
  throw new Error(`too many files named like ${safe} in ${dir}`);
}
