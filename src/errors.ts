/**
 * The one error type (MigrationError), the table of problem kinds with their
 * titles and fixes, and the exit codes they map to.
 *
 * @module
 */

import type { ErrorKind, ProblemGroup, ProblemKind, Report } from "./types.ts";

/** The one error type of this tool: a message for the user, a hint, an exit code. */
export class MigrationError extends Error {
  /** What went wrong, which decides the exit code. */
  readonly kind: ErrorKind;
  /** What the user can do about it. */
  readonly hint: string;
  /** For `data` and `verification`: the offending rows, grouped by kind. */
  readonly problems: ProblemGroup[];
  /** For `verification`: the report of the run that was rolled back. */
  readonly report?: Report;

  /** Creates the error; `problems` and `report` are for data and verification errors. */
  constructor(
    kind: ErrorKind,
    message: string,
    hint = "",
    problems: ProblemGroup[] = [],
    report?: Report,
  ) {
    super(message);
    this.name = "MigrationError";
    this.kind = kind;
    this.hint = hint;
    this.problems = problems;
    this.report = report;
  }

  /** 1 for data problems and verification mismatches, 3 for a lock not granted, 70 for our bugs, 2 otherwise. */
  get exitCode(): number {
    if (this.kind === "internal") return EXIT_INTERNAL;
    if (this.kind === "lock") return EXIT_LOCK_TIMEOUT;
    return this.kind === "data" || this.kind === "verification" ? 1 : 2;
  }
}

/** Exit code of an internal error, a bug of ours (EX_SOFTWARE in sysexits.h). */
export const EXIT_INTERNAL = 70;

/**
 * Exit code of a run that gave up waiting for a lock (--lock-timeout): the
 * target is busy, not misconfigured, so a cut-over script may retry.
 */
export const EXIT_LOCK_TIMEOUT = 3;

/** How many rows of each problem kind are named in messages and reports. */
export const EXAMPLES_PER_KIND = 20;

export const PROBLEM_KINDS: Record<ProblemKind, { title: string; hint: string }> = {
  "invalid-json": {
    title: "raw_json is not valid JSON for PostgreSQL's JSONB",
    hint: "fix or blank the payload in SQLite, or rerun with --invalid-json=null to store SQL NULL",
  },
  "not-integer": {
    title: "value is not a whole number",
    hint: "store a whole number in SQLite: UPDATE … SET col = CAST(col AS INTEGER) WHERE …",
  },
  "out-of-range": {
    title: "integer is outside the range of the PostgreSQL column's type",
    hint: "correct the value in SQLite, or widen the column (ALTER TABLE … TYPE bigint)",
  },
  "too-long": {
    title: "text is longer than the PostgreSQL column allows",
    hint:
      "shorten the value in SQLite, or widen the column (ALTER TABLE … TYPE varchar(N) or text)",
  },
  "not-allowed": {
    title: "value is not one of the PostgreSQL enum type's labels",
    hint: "correct the value in SQLite, or add the label (ALTER TYPE … ADD VALUE '…')",
  },
  "invalid-date": {
    title: "value is not a calendar date written YYYY-MM-DD",
    hint:
      "correct the date in SQLite, e.g. UPDATE snapshots SET snapshot_date = '2024-01-31' WHERE …",
  },
  "invalid-timestamp": {
    title: "value is not a timestamp written YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|±HH[:MM]]",
    hint: "correct the value in SQLite (SQLite's CURRENT_TIMESTAMP format works; it means UTC)",
  },
  "too-precise": {
    title:
      "timestamp has more fractional-second digits than the PostgreSQL column keeps (it would be rounded)",
    hint:
      "round the value in SQLite, or let the column keep them: ALTER TABLE … ALTER COLUMN … TYPE timestamp(6)",
  },
  "invalid-boolean": {
    title: "value is not a boolean (0, 1, true or false)",
    hint: "store 0 or 1 in SQLite",
  },
  "nul-character": {
    title: "text contains a NUL character, which PostgreSQL cannot store",
    hint: "remove it in SQLite: UPDATE … SET col = replace(col, char(0), '')",
  },
  "invalid-utf8": {
    title: "text holds bytes that are not UTF-8 (SQLite stores them as given)",
    hint:
      "rewrite the value in SQLite as UTF-8 text (SELECT hex(col) … shows the bytes; Latin-1 is common)",
  },
  "null-value": {
    title: "NULL in a column that is NOT NULL in PostgreSQL",
    hint: "fill in the value in SQLite or delete the row",
  },
  "not-text": {
    title: "value is not text (a number or BLOB in a text column)",
    hint: "store it as text in SQLite: UPDATE … SET col = CAST(col AS TEXT)",
  },
  "orphan-snapshot": {
    title: "snapshot refers to a track_id that has no track",
    hint: "add the track or delete the snapshot in SQLite, or rerun with --orphans=skip",
  },
  "duplicate-key": {
    title: "the same key occurs more than once in SQLite",
    hint: "delete the extra rows in SQLite (keep the one you want), then rerun",
  },
  "check-violation": {
    title: "row violates a CHECK constraint of the PostgreSQL table",
    hint: "correct the rows in SQLite, or change the constraint if it is wrong",
  },
  "unique-violation": {
    title: "value must be unique in PostgreSQL (UNIQUE constraint or index) but is not",
    hint: "make the values unique in SQLite, or drop the constraint if it is wrong",
  },
  "extra-row": {
    title: "row exists in PostgreSQL but not in SQLite",
    hint: "rerun with --prune to delete such rows, or add them to SQLite",
  },
  "content-mismatch": {
    title: "row in PostgreSQL differs from its source",
    hint:
      "nothing was committed; a trigger or rule of the target may change rows on the way in, or report a bug",
  },
};

/** The fix for what --verify-only finds: the difference is in the data, not in a run. */
export const VERIFY_ONLY_HINT =
  "SQLite or PostgreSQL changed since the last run: run the migration to make PostgreSQL match SQLite (--prune also deletes the rows only in PostgreSQL)";

/** Exit codes of the CLI, for `--help` (two to a line) and the README. */
export const EXIT_CODES: readonly string[] = [
  "0 success",
  "1 data problem or verification mismatch",
  "2 usage, configuration or connection error",
  `${EXIT_LOCK_TIMEOUT} gave up waiting for a lock another session holds (--lock-timeout)`,
  `${EXIT_INTERNAL} internal error (a bug: please report it)`,
  "129 SIGHUP, 130 SIGINT (Ctrl-C), 143 SIGTERM: rolled back",
];

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
