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

  /** The exit code of its kind: see {@link EXIT_CODE}. */
  get exitCode(): number {
    return EXIT_CODE[this.kind];
  }
}

/**
 * The exit code of each kind of error: 1 for what is wrong in the data,
 * 2 for what is wrong in the setup, 3 for a lock not granted within
 * --lock-timeout (the target is busy, not misconfigured, so a cut-over
 * script may retry), 70 for a bug of ours (EX_SOFTWARE in sysexits.h).
 * Success is 0; signals are in {@link STOP_SIGNALS}.
 */
export const EXIT_CODE: Readonly<Record<ErrorKind, number>> = {
  data: 1,
  verification: 1,
  usage: 2,
  config: 2,
  connection: 2,
  lock: 3,
  internal: 70,
};

/** Exit code of an internal error, a bug of ours. */
export const EXIT_INTERNAL = EXIT_CODE.internal;

/**
 * Signals that end a run, with the exit code (128 + the signal's number) and
 * what the CLI says: PostgreSQL rolls back the open transaction when the
 * connection drops, so the target stays as it was.
 */
export const STOP_SIGNALS: readonly [Deno.Signal, number, string][] = [
  ["SIGHUP", 129, "hung up (SIGHUP)"],
  ["SIGINT", 130, "interrupted"],
  ["SIGTERM", 143, "terminated (SIGTERM)"],
];

/** Exit code of a run that gave up waiting for a lock (--lock-timeout). */
export const EXIT_LOCK_TIMEOUT = EXIT_CODE.lock;

/** How many rows of each problem kind are named in messages and reports. */
export const EXAMPLES_PER_KIND = 20;

/**
 * Each problem kind's title and fix, and for kinds a policy can accept, what
 * the policy did instead (the fix of a "Changed by policy" group).
 */
export const PROBLEM_KINDS: Record<ProblemKind, { title: string; hint: string; policy?: string }> =
  {
    "invalid-json": {
      title: "raw_json is not valid JSON for PostgreSQL's JSONB",
      hint:
        "fix or blank the payload in SQLite, or rerun with --invalid-json=null to store SQL NULL",
      policy:
        "stored as SQL NULL (--invalid-json=null): fix the payload in SQLite and rerun to keep it",
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
        "correct each row listed in SQLite, by its key: UPDATE snapshots SET snapshot_date = 'YYYY-MM-DD' WHERE track_id = '…' AND snapshot_date = '…' AND time_range = '…'",
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
      hint:
        "fill in the values in SQLite: UPDATE … SET col = … WHERE col IS NULL (deleting the rows instead also loses what refers to them, such as a track's snapshots)",
    },
    "not-text": {
      title: "value is not text (a number or BLOB in a text column)",
      hint: "store it as text in SQLite: UPDATE … SET col = CAST(col AS TEXT)",
    },
    "orphan-snapshot": {
      title: "snapshot refers to a track_id that has no track",
      hint: "add the track or delete the snapshot in SQLite, or rerun with --orphans=skip",
      policy: "left out (--orphans=skip): add the track in SQLite and rerun to migrate them",
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
  `${EXIT_CODE.data} data problem or verification mismatch`,
  `${EXIT_CODE.config} usage, configuration or connection error`,
  `${EXIT_CODE.lock} gave up waiting for a lock another session holds (--lock-timeout)`,
  `${EXIT_CODE.internal} internal error (a bug: please report it)`,
  `${
    STOP_SIGNALS.map(([signal, code]) =>
      `${code} ${signal}${signal === "SIGINT" ? " (Ctrl-C)" : ""}`
    )
      .join(", ")
  }: rolled back`,
];

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
