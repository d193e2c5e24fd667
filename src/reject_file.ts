/**
 * The reject file: every problem row, one per line.
 *
 * @module
 */

import type { Problem, ProblemKind } from "./types.ts";
import { errorMessage, MigrationError, PROBLEM_KINDS } from "./errors.ts";
import { TABLES } from "./tables.ts";
import { type ProblemSink, sourceValue } from "./validate.ts";
import { preview } from "./values.ts";

/** What a policy did to a row, by problem kind: the reject file's `action`. */
const POLICY_ACTIONS: Partial<Record<ProblemKind, string>> = {
  "invalid-json": "stored-null",
  "orphan-snapshot": "skipped",
};

/** Every table's key columns, in order, once: the reject file has a field for each. */
const KEY_COLUMNS = [...new Set(TABLES.flatMap((t) => t.key))];

const FIELDS = [
  "action",
  "table",
  "key",
  ...KEY_COLUMNS,
  "kind",
  "problem",
  "column",
  "value",
  "detail",
  "constraint",
];

/**
 * One problem as the reject file writes it: the key also column by column,
 * the whole value as SQLite holds it (not shortened, not quoted), and the
 * note `value` carries in reports (a length, a reason) as `detail`.
 */
export function rejectRecord(problem: Problem, action: "refused" | "changed") {
  const spec = TABLES.find((t) => t.name === problem.table)!;
  const parts = problem.key.split("/");
  const keyColumns = Object.fromEntries(
    spec.key.map((name, i) => [name, parts.length === spec.key.length ? parts[i] : undefined]),
  );
  const whole = sourceValue(problem);
  const value = whole === undefined
    ? problem.value
    : whole instanceof Uint8Array
    ? `BLOB(${whole.length} bytes)`
    : whole === null
    ? null
    : String(whole);
  return {
    action: action === "changed" ? POLICY_ACTIONS[problem.kind] ?? action : action,
    table: problem.table,
    key: problem.key,
    ...keyColumns,
    kind: problem.kind,
    problem: PROBLEM_KINDS[problem.kind].title,
    column: problem.column,
    value,
    detail: whole === undefined ? undefined : detailOf(problem.value, whole),
    constraint: problem.constraint,
  };
}

/** What `value` says beyond the shortened value itself: `65 characters; varchar(64) holds 64`. */
function detailOf(shown: string | undefined, whole: unknown): string | undefined {
  const start = preview(whole);
  if (!shown?.startsWith(start)) return shown;
  return /^\s*\((.*)\)$/s.exec(shown.slice(start.length))?.[1];
}

/** The reject file: every problem row, one per line, as pgloader's reject files list them. */
export function openRejectFile(path: string): { sink: ProblemSink; close: () => void } {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { write: true, create: true, truncate: true });
  } catch (error) {
    throw new MigrationError(
      "config",
      `cannot write the reject file ${path}: ${errorMessage(error)}`,
      "pass a writable path to --reject-file",
    );
  }
  const csv = path.toLowerCase().endsWith(".csv");
  const encoder = new TextEncoder();
  const write = (line: string) => file.writeSync(encoder.encode(line + "\n"));
  if (csv) write(FIELDS.join(","));
  return {
    sink: (problem, action) => {
      const record: Record<string, unknown> = rejectRecord(problem, action);
      write(
        csv
          ? FIELDS.map((f) => csvField(record[f] == null ? "" : String(record[f]))).join(",")
          : JSON.stringify(record),
      );
    },
    close: () => file.close(),
  };
}

const csvField = (text: string) => /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
