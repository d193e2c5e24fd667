/**
 * The reject file: every problem row, one per line.
 *
 * @module
 */

import { errorMessage, MigrationError, PROBLEM_KINDS } from "./errors.ts";
import type { ProblemSink } from "./validate.ts";

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
  const fields = ["action", "table", "key", "kind", "column", "value", "constraint"] as const;
  const encoder = new TextEncoder();
  const write = (line: string) => file.writeSync(encoder.encode(line + "\n"));
  if (csv) write(fields.join(","));
  return {
    sink: (problem, action) => {
      const row = { action, ...problem };
      write(
        csv
          ? fields.map((f) => csvField(String(row[f] ?? ""))).join(",")
          : JSON.stringify({ ...row, problem: PROBLEM_KINDS[problem.kind].title }),
      );
    },
    close: () => file.close(),
  };
}

const csvField = (text: string) => /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
