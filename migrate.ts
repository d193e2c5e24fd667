#!/usr/bin/env -S deno run --allow-read --allow-write --allow-env --allow-net --allow-sys
/**
 * Moves the Music Time Machine's data (`tracks`, `snapshots`) from SQLite to
 * PostgreSQL without changing its meaning: one transaction, every row
 * validated before it is sent, every migrated row proven equal to its source
 * before COMMIT.
 *
 * The module reads top to bottom like the pipeline:
 * types and constants → configuration → read (SQLite) → validate → load
 * (PostgreSQL) → verify → report → CLI.
 *
 * @example Library use
 * ```ts
 * import { migrate } from "./migrate.ts";
 *
 * const report = await migrate({
 *   sqlitePath: "music_time_machine.db",
 *   databaseUrl: "postgresql://localhost/music_time_machine_pg",
 * });
 * console.log(report.tables);
 * ```
 *
 * @example Command line
 * ```sh
 * deno run -A migrate.ts --sqlite music_time_machine.db --dry-run
 * ```
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import postgres from "postgres";

// ---------------------------------------------------------------------------
// 1. Public types and constants
// ---------------------------------------------------------------------------

/** What to do with `raw_json` that is not valid JSON for JSONB. */
export type InvalidJsonPolicy = "fail" | "null";
/** What to do with snapshots whose `track_id` has no track. */
export type OrphanPolicy = "fail" | "skip";
/** Which kind of run produced a {@link Report}. */
export type Mode = "migrate" | "dry-run" | "verify-only";

/** Everything a run needs; {@link resolveOptions} fills in the defaults. */
export interface Options {
  /** Path of the SQLite database (env `SQLITE_PATH`). */
  sqlitePath: string;
  /** PostgreSQL connection URL (env `DATABASE_URL`); `sslmode` is honoured. */
  databaseUrl: string;
  /** PostgreSQL schema holding `tracks` and `snapshots`. */
  schema: string;
  /** Create the schema and tables when they do not exist. */
  createSchema: boolean;
  /** Rows read from SQLite per call; more is a little faster and holds more memory. */
  batchSize: number;
  /** `fail` (default) or `null`: store SQL NULL for bad `raw_json`. */
  invalidJson: InvalidJsonPolicy;
  /** `fail` (default) or `skip`: leave orphan snapshots out. */
  orphans: OrphanPolicy;
  /** Delete target rows that the source does not have. */
  prune: boolean;
  /** Do everything, then roll back. */
  dryRun: boolean;
  /** Compare source and target without writing. */
  verifyOnly: boolean;
  /** Seconds to wait for a PostgreSQL connection. */
  connectTimeout: number;
  /** Called with progress while rows are read and sent. */
  onProgress?: (progress: Progress) => void;
  /** Called with one line per step ("reading tracks", "waiting for lock"). */
  onStep?: (line: string) => void;
}

/** Rows done so far for one table. */
export interface Progress {
  /** The table being read. */
  table: TableName;
  /** Rows sent to PostgreSQL so far. */
  done: number;
  /** Rows in the SQLite table. */
  total: number;
}

/** The two tables the tool moves, in load order. */
export type TableName = "tracks" | "snapshots";

/** Kinds of problem the tool reports; each comes with a title and a fix. */
export type ProblemKind =
  | "invalid-json"
  | "not-integer"
  | "invalid-date"
  | "nul-character"
  | "null-value"
  | "not-text"
  | "orphan-snapshot"
  | "duplicate-key"
  | "extra-row"
  | "content-mismatch";

/** One offending row. */
export interface Problem {
  /** What is wrong. */
  kind: ProblemKind;
  /** The table the row belongs to. */
  table: TableName;
  /** The row's key: `track_id`, or `track_id/snapshot_date/time_range`. */
  key: string;
  /** The offending column, where one is to blame. */
  column?: string;
  /** The offending value (truncated), or what differs. */
  value?: string;
}

/** Problems of one kind: the first {@link EXAMPLES_PER_KIND} and the total. */
export interface ProblemGroup {
  /** What is wrong with these rows. */
  kind: ProblemKind;
  /** One line saying what is wrong, for people. */
  title: string;
  /** What to do about it. */
  hint: string;
  /** How many rows have this problem. */
  total: number;
  /** The first rows, by the order they were found or by key. */
  examples: Problem[];
}

/** Per-table outcome, as in pgloader's summary plus inserted/updated/unchanged. */
export interface TableReport {
  /** The table. */
  table: TableName;
  /** Rows read from SQLite. */
  read: number;
  /** Rows new in PostgreSQL. */
  inserted: number;
  /** Rows whose values changed (tracks also get a new `updated_at`). */
  updated: number;
  /** Rows already equal in PostgreSQL, left untouched. */
  unchanged: number;
  /** Rows left out by a policy (`--orphans=skip`). */
  skipped: number;
  /** Rows deleted from PostgreSQL by `--prune`. */
  pruned: number;
  /** Seconds spent on this table. */
  seconds: number;
}

/** Row counts of one table on both sides. */
export interface CountCheck {
  /** The table. */
  table: TableName;
  /** Rows in SQLite. */
  sqlite: number;
  /** Rows the target should hold: read minus rows skipped by a policy. */
  expected: number;
  /** Rows in PostgreSQL. */
  postgres: number;
}

/** The seed's sample query: a track with an album, and two fields of its payload. */
export interface Sample {
  /** The track's name. */
  name: string;
  /** `raw_json->'album'->>'release_date'`. */
  releaseDate: string | null;
  /** `raw_json->>'explicit'`. */
  explicit: string | null;
}

/** The result of comparing the target with its source. */
export interface Verification {
  /** True if counts match and every row equals its source. */
  ok: boolean;
  /** Row counts per table. */
  counts: CountCheck[];
  /** Tracks whose `raw_json` is a JSONB object. */
  jsonObjects: number;
  /** The seed's sample query, or null when no track has an album. */
  sample: Sample | null;
  /** Rows that differ, are missing, or exist only in the target. */
  mismatches: ProblemGroup[];
}

/** What a run did; returned by {@link migrate} and printed by the CLI. */
export interface Report {
  /** True if verification passed. */
  ok: boolean;
  /** Which kind of run this was. */
  mode: Mode;
  /** True if the transaction was committed (never for dry runs and verify-only). */
  committed: boolean;
  /** The SQLite file read. */
  sqlitePath: string;
  /** The database URL with its password masked. */
  target: string;
  /** The PostgreSQL schema written. */
  schema: string;
  /** Per-table outcome, in load order. */
  tables: TableReport[];
  /** Counts, JSONB checks and the content comparison. */
  verification: Verification;
  /** Rows changed by an opt-in policy (`--invalid-json=null`, `--orphans=skip`). */
  policies: ProblemGroup[];
  /** Seconds for the whole run. */
  seconds: number;
}

/** Why a run stopped. `exitCode` is 1 for data, 2 for usage/setup/connection. */
export type ErrorKind = "usage" | "config" | "connection" | "data" | "verification";

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

  /** 1 for data problems and verification mismatches, 2 otherwise. */
  get exitCode(): number {
    return this.kind === "data" || this.kind === "verification" ? 1 : 2;
  }
}

/** Defaults, as in the seed script. */
export const DEFAULTS = {
  sqlitePath: "music_time_machine.db",
  databaseUrl: "postgresql://localhost/music_time_machine_pg",
  schema: "public",
  batchSize: 100,
  connectTimeout: 10,
} as const;

/** How many rows of each problem kind are named in messages and reports. */
export const EXAMPLES_PER_KIND = 20;

const PROBLEM_KINDS: Record<ProblemKind, { title: string; hint: string }> = {
  "invalid-json": {
    title: "raw_json is not valid JSON for PostgreSQL's JSONB",
    hint: "fix or blank the payload in SQLite, or rerun with --invalid-json=null to store SQL NULL",
  },
  "not-integer": {
    title: "value is not an integer in PostgreSQL's INTEGER range",
    hint: "correct the value in SQLite (a whole number between -2147483648 and 2147483647)",
  },
  "invalid-date": {
    title: "snapshot_date is not a calendar date written YYYY-MM-DD",
    hint:
      "correct the date in SQLite, e.g. UPDATE snapshots SET snapshot_date = '2024-01-31' WHERE …",
  },
  "nul-character": {
    title: "text contains a NUL character, which PostgreSQL cannot store",
    hint: "remove it in SQLite: UPDATE … SET col = replace(col, char(0), '')",
  },
  "null-value": {
    title: "NULL in a column that is NOT NULL in PostgreSQL",
    hint: "fill in the value in SQLite or delete the row",
  },
  "not-text": {
    title: "value is not text (a number or BLOB in a TEXT column)",
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
  "extra-row": {
    title: "row exists in PostgreSQL but not in SQLite",
    hint: "rerun with --prune to delete such rows, or add them to SQLite",
  },
  "content-mismatch": {
    title: "row in PostgreSQL differs from its source",
    hint: "nothing was committed; rerun, and report a bug if it persists",
  },
};

type ColumnType = "text" | "integer" | "date" | "json";

interface ColumnSpec {
  name: string;
  type: ColumnType;
  notNull: boolean;
}

/**
 * One table, declared once: this drives the SQLite SELECT, validation, the
 * staging table, COPY, the upsert, the verification and `--create-schema`.
 */
interface TableSpec {
  name: TableName;
  key: string[];
  columns: ColumnSpec[];
  /** Column set to NOW() when a row changes. */
  touch?: string;
  /** DDL beyond the columns, for `--create-schema`. */
  extraDdl: string[];
}

const TRACKS: TableSpec = {
  name: "tracks",
  key: ["track_id"],
  columns: [
    { name: "track_id", type: "text", notNull: true },
    { name: "name", type: "text", notNull: true },
    { name: "artist_name", type: "text", notNull: true },
    { name: "album_name", type: "text", notNull: false },
    { name: "duration_ms", type: "integer", notNull: false },
    { name: "spotify_url", type: "text", notNull: false },
    { name: "raw_json", type: "json", notNull: false },
  ],
  touch: "updated_at",
  extraDdl: [
    "created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
    "updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
    "PRIMARY KEY (track_id)",
  ],
};

const SNAPSHOTS: TableSpec = {
  name: "snapshots",
  key: ["track_id", "snapshot_date", "time_range"],
  columns: [
    { name: "track_id", type: "text", notNull: true },
    { name: "snapshot_date", type: "date", notNull: true },
    { name: "time_range", type: "text", notNull: true },
    { name: "rank", type: "integer", notNull: true },
  ],
  extraDdl: [
    "PRIMARY KEY (track_id, snapshot_date, time_range)",
    "FOREIGN KEY (track_id) REFERENCES tracks (track_id)",
  ],
};

/** Load order: snapshots reference tracks. */
const TABLES: readonly TableSpec[] = [TRACKS, SNAPSHOTS];

const PG_TYPES: Record<ColumnType, string> = {
  text: "TEXT",
  integer: "INTEGER",
  date: "DATE",
  json: "JSONB",
};

// information_schema.columns.data_type spelling of PG_TYPES.
const PG_TYPE_NAMES: Record<ColumnType, string> = {
  text: "text",
  integer: "integer",
  date: "date",
  json: "jsonb",
};

const WORK_MEM = "256MB";
const APPLICATION_NAME = "migrate.ts";
const SQLITE_BUSY_TIMEOUT_MS = 10_000;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const VALUE_PREVIEW_CHARS = 60;
// COPY data is written in pieces of about this many characters: larger
// pieces are no faster and make V8 hold more memory.
const COPY_FLUSH_CHARS = 1 << 15;

// ---------------------------------------------------------------------------
// 2. Configuration: flags > environment > .env > defaults, resolved once
// ---------------------------------------------------------------------------

/** What the CLI understands; `--help` prints this. */
export const USAGE = `migrate.ts: move the Music Time Machine from SQLite to PostgreSQL

Usage: deno run -A migrate.ts [options]

Options:
  --sqlite PATH           SQLite database to read (env SQLITE_PATH; default music_time_machine.db)
  --database-url URL      PostgreSQL URL (env DATABASE_URL; default postgresql://localhost/music_time_machine_pg)
  --schema NAME           PostgreSQL schema holding the tables (default public)
  --create-schema         create the schema and tables if they do not exist
  --dry-run               do everything inside the transaction, print what would change, roll back
  --verify-only           compare the target with SQLite without writing anything
  --prune                 delete rows that exist in PostgreSQL but not in SQLite
  --invalid-json=POLICY   fail (default) or null: store SQL NULL for raw_json that is not JSON
  --orphans=POLICY        fail (default) or skip: leave out snapshots whose track is missing
  --batch-size N          rows read from SQLite per call (default ${DEFAULTS.batchSize})
  --connect-timeout SEC   give up connecting after SEC seconds (default ${DEFAULTS.connectTimeout})
  --quiet                 print only errors
  --json                  print the report as one JSON object on stdout
  -h, --help              show this help

Configuration is read from flags, then the environment, then a .env file in the
current directory (a variable already set wins over .env).

Exit codes: 0 success, 1 data problem or verification mismatch,
            2 usage, configuration or connection error.

Examples:
  deno run -A migrate.ts
  deno run -A migrate.ts --sqlite ~/app/music_time_machine.db --dry-run
  DATABASE_URL=postgresql://app:secret@db.example.com/mtm?sslmode=require deno run -A migrate.ts
  deno run -A migrate.ts --verify-only --json
  deno run -A migrate.ts --schema staging --create-schema --prune
`;

/** How the CLI prints, beside the {@link Options} of the run. */
export interface OutputOptions {
  /** Print the usage and exit. */
  help: boolean;
  /** Print only errors. */
  quiet: boolean;
  /** Print the report as one JSON object on stdout. */
  json: boolean;
}

const ENV_LINE =
  /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(.*?))\s*(?:\s#.*)?$/;
const DOUBLE_QUOTED_ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t" };

/**
 * Parses the text of a `.env` file: `KEY=value`, `export KEY=value`, quoted
 * values, `#` comments.
 *
 * @example
 * ```ts
 * import { parseDotenv } from "./migrate.ts";
 * parseDotenv("DATABASE_URL=postgresql://localhost/db # local\n");
 * // { DATABASE_URL: "postgresql://localhost/db" }
 * ```
 */
export function parseDotenv(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = ENV_LINE.exec(line);
    if (!match) continue;
    const [, key, doubleQuoted, singleQuoted, bare] = match;
    values[key] = doubleQuoted !== undefined
      ? doubleQuoted.replace(/\\(.)/g, (_, c: string) => DOUBLE_QUOTED_ESCAPES[c] ?? c)
      : singleQuoted ?? bare ?? "";
  }
  return values;
}

/**
 * The environment as the tool sees it: variables already set win over the
 * `.env` file, as with python-dotenv (Deno's `process.loadEnvFile` would
 * override them). A missing `.env` is not an error.
 */
function environmentWithDotenv(path = ".env"): Record<string, string> {
  let fileValues: Record<string, string> = {};
  try {
    fileValues = parseDotenv(Deno.readTextFileSync(path));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return { ...fileValues, ...Deno.env.toObject() };
}

/**
 * Resolves command-line flags and environment variables into {@link Options}.
 * This is the only place that knows flags, variable names and defaults.
 *
 * @example
 * ```ts
 * import { resolveOptions } from "./migrate.ts";
 * const { options } = resolveOptions(["--dry-run"], { SQLITE_PATH: "app.db" });
 * options.sqlitePath; // "app.db"
 * ```
 */
export function resolveOptions(
  args: string[],
  env: Record<string, string | undefined>,
): { options: Options; output: OutputOptions } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        sqlite: { type: "string" },
        "database-url": { type: "string" },
        schema: { type: "string" },
        "create-schema": { type: "boolean" },
        "dry-run": { type: "boolean" },
        "verify-only": { type: "boolean" },
        prune: { type: "boolean" },
        "invalid-json": { type: "string" },
        orphans: { type: "string" },
        "batch-size": { type: "string" },
        "connect-timeout": { type: "string" },
        quiet: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    throw new MigrationError("usage", errorMessage(error), "see --help");
  }
  const options: Options = {
    sqlitePath: parsed.sqlite ?? env.SQLITE_PATH ?? DEFAULTS.sqlitePath,
    databaseUrl: parsed["database-url"] ?? env.DATABASE_URL ?? DEFAULTS.databaseUrl,
    schema: parsed.schema ?? DEFAULTS.schema,
    createSchema: parsed["create-schema"] ?? false,
    batchSize: positiveInteger("--batch-size", parsed["batch-size"], DEFAULTS.batchSize),
    invalidJson: oneOf("--invalid-json", parsed["invalid-json"], ["fail", "null"] as const),
    orphans: oneOf("--orphans", parsed.orphans, ["fail", "skip"] as const),
    prune: parsed.prune ?? false,
    dryRun: parsed["dry-run"] ?? false,
    verifyOnly: parsed["verify-only"] ?? false,
    connectTimeout: positiveInteger(
      "--connect-timeout",
      parsed["connect-timeout"],
      DEFAULTS.connectTimeout,
    ),
  };
  if (options.dryRun && options.verifyOnly) {
    throw new MigrationError("usage", "--dry-run and --verify-only exclude each other", "pick one");
  }
  return {
    options,
    output: {
      help: parsed.help ?? false,
      quiet: parsed.quiet ?? false,
      json: parsed.json ?? false,
    },
  };
}

function positiveInteger(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new MigrationError("usage", `${flag} must be a positive integer, got '${text}'`);
  }
  return value;
}

function oneOf<T extends string>(flag: string, text: string | undefined, allowed: readonly T[]): T {
  if (text === undefined) return allowed[0];
  if (!(allowed as readonly string[]).includes(text)) {
    throw new MigrationError(
      "usage",
      `${flag} must be one of ${allowed.join(", ")}, got '${text}'`,
    );
  }
  return text as T;
}

/**
 * The URL with its password replaced by `***`, safe to print.
 *
 * @example
 * ```ts
 * import { maskUrl } from "./migrate.ts";
 * maskUrl("postgresql://app:secret@db/mtm"); // "postgresql://app:***@db/mtm"
 * ```
 */
export function maskUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, "$1***@");
}

/** Removes the password of `url` from any text, wherever it appears. */
function redact(text: string, url: string): string {
  const password = /^[a-z][a-z0-9+.-]*:\/\/[^:/@]*:([^@]*)@/i.exec(url)?.[1];
  if (!password) return text;
  let redacted = text.replaceAll(password, "***");
  try {
    redacted = redacted.replaceAll(decodeURIComponent(password), "***");
  } catch {
    // A password that is not valid percent-encoding appears only as written.
  }
  return redacted;
}

// ---------------------------------------------------------------------------
// 3. Read: SQLite, read-only, one read transaction, streaming
// ---------------------------------------------------------------------------

/** SQLite source opened read-only inside one read transaction. */
interface Source {
  path: string;
  db: DatabaseSync;
  counts: Record<TableName, number>;
  /** Whether SQLite itself guarantees the table's key is unique. */
  uniqueKey: Record<TableName, boolean>;
  /** Whether rows can be paged by rowid (not a WITHOUT ROWID table, no column named rowid). */
  pageable: Record<TableName, boolean>;
}

function openSource(path: string): Source {
  // Opening a missing path read-only fails, but check first so the message
  // names the path and nothing is ever created.
  try {
    if (!Deno.statSync(path).isFile) {
      throw new MigrationError(
        "config",
        `SQLite path ${path} is not a file`,
        "set SQLITE_PATH or --sqlite",
      );
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new MigrationError(
        "config",
        `SQLite database not found: ${path}`,
        "set SQLITE_PATH or pass --sqlite PATH to the app's database file",
      );
    }
    throw error;
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    // The app may be committing right now: wait for it rather than fail.
    db.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
    // BEGIN + a first read pins one snapshot of the whole file: both tables
    // are read as of the same moment while the app keeps writing.
    db.exec("BEGIN");
    db.prepare("SELECT count(*) FROM sqlite_master").get();
  } catch (error) {
    throw new MigrationError(
      "config",
      `${path} is not a readable SQLite database (${errorMessage(error)})`,
      "check SQLITE_PATH points at the app's .db file",
    );
  }
  try {
    const counts = {} as Record<TableName, number>;
    const uniqueKey = {} as Record<TableName, boolean>;
    const pageable = {} as Record<TableName, boolean>;
    for (const table of TABLES) {
      pageable[table.name] = checkSourceColumns(db, table);
      counts[table.name] = Number(
        (db.prepare(`SELECT count(*) AS n FROM "${table.name}"`).get() as { n: number }).n,
      );
      uniqueKey[table.name] = hasUniqueIndexOn(db, table);
    }
    return { path, db, counts, uniqueKey, pageable };
  } catch (error) {
    db.close();
    throw asSqliteError(error, path);
  }
}

/** SQLite's own errors (locked, corrupt, I/O) as one line that names the file. */
function asSqliteError(error: unknown, path: string): MigrationError {
  if (error instanceof MigrationError) return error;
  return new MigrationError(
    "config",
    `SQLite ${path}: ${errorMessage(error)}`,
    "check the file is the app's database and readable; run PRAGMA integrity_check on it",
  );
}

/** Checks the table has the columns we need; returns whether it can be paged by rowid. */
function checkSourceColumns(db: DatabaseSync, table: TableSpec): boolean {
  const present = new Set(
    db.prepare(`PRAGMA table_info("${table.name}")`).all().map((row) => String(row.name)),
  );
  if (present.size === 0) {
    throw new MigrationError(
      "config",
      `SQLite database has no table ${table.name}`,
      "check SQLITE_PATH points at the Music Time Machine database",
    );
  }
  const missing = table.columns.filter((column) => !present.has(column.name));
  if (missing.length > 0) {
    throw new MigrationError(
      "config",
      `SQLite table ${table.name} lacks column ${missing.map((c) => c.name).join(", ")}`,
      "the source must have the app's columns; extra columns are ignored",
    );
  }
  const [info] = db.prepare(`PRAGMA table_list("${table.name}")`).all();
  return Number(info?.wr) === 0 && !present.has("rowid");
}

/** node:sqlite can return rows as arrays (faster); its type declarations lag behind. */
interface ArrayStatement {
  iterate(): IterableIterator<unknown[]>;
  all(...params: unknown[]): unknown[][];
}

/**
 * Prepares a statement that yields arrays and reads integers as BigInt:
 * node:sqlite's iterate() otherwise stops silently at an integer beyond 2^53.
 */
function prepareArrays(db: DatabaseSync, text: string): ArrayStatement {
  const statement = db.prepare(text) as StatementSync & { setReturnArrays(on: boolean): void };
  statement.setReturnArrays(true);
  statement.setReadBigInts(true);
  return statement as unknown as ArrayStatement;
}

/** True if some UNIQUE index or primary key uses only key columns. */
function hasUniqueIndexOn(db: DatabaseSync, table: TableSpec): boolean {
  const indexes = db.prepare(`PRAGMA index_list("${table.name}")`).all();
  return indexes.some((index) => {
    if (Number(index.unique) !== 1 || Number(index.partial) === 1) return false;
    const columns = db.prepare(`PRAGMA index_info("${String(index.name)}")`).all()
      .map((row) => String(row.name));
    return columns.length > 0 && columns.every((name) => table.key.includes(name));
  });
}

/**
 * Streams a table's rows as arrays in column order, followed by a bit mask
 * of the text columns that contain NUL: node:sqlite cuts text at NUL, so
 * only SQLite itself can see it.
 */
function* readRows(source: Source, table: TableSpec, pageRows: number): Generator<unknown[]> {
  const nulChecks = table.columns.map((column, i) =>
    column.type === "integer"
      ? "0"
      : `((coalesce(instr(CAST("${column.name}" AS BLOB), X'00'), 0) > 0) << ${i})`
  );
  const columns = `${table.columns.map((c) => `"${c.name}"`).join(", ")}, ${nulChecks.join(" | ")}`;
  let read = 0;
  if (source.pageable[table.name]) {
    // A page per all() call is ~2.5× faster than iterate(); small pages keep
    // the payloads young, so V8 frees them without growing the heap.
    const page = prepareArrays(
      source.db,
      `SELECT ${columns}, rowid FROM "${table.name}" WHERE rowid > ? ORDER BY rowid LIMIT ${pageRows}`,
    );
    const fetch = (after: unknown) => {
      try {
        return page.all(after);
      } catch (error) {
        throw asSqliteError(error, source.path);
      }
    };
    for (let rows = fetch(-1); rows.length > 0; rows = fetch(rows[rows.length - 1].at(-1))) {
      read += rows.length;
      yield* rows;
    }
  } else {
    try {
      for (
        const row of prepareArrays(source.db, `SELECT ${columns} FROM "${table.name}"`).iterate()
      ) {
        read++;
        yield row;
      }
    } catch (error) {
      throw asSqliteError(error, source.path);
    }
  }
  if (read !== source.counts[table.name]) {
    throw new MigrationError(
      "data",
      `SQLite returned ${read} of ${source.counts[table.name]} rows of ${table.name}`,
      "run PRAGMA integrity_check on the SQLite file",
    );
  }
}

/** Keys that occur more than once, asked of SQLite only when no UNIQUE index rules them out. */
function duplicateSourceKeys(source: Source, table: TableSpec): { key: string; count: number }[] {
  if (source.uniqueKey[table.name]) return [];
  const keys = table.key.map((name) => `"${name}"`).join(", ");
  const statement = prepareArrays(
    source.db,
    `SELECT ${keys}, count(*) FROM "${table.name}" GROUP BY ${keys} HAVING count(*) > 1`,
  );
  try {
    return statement.all().map((row) => ({
      key: row.slice(0, -1).map(String).join("/"),
      count: Number(row.at(-1)),
    }));
  } catch (error) {
    throw asSqliteError(error, source.path);
  }
}

// ---------------------------------------------------------------------------
// 4. Validate: pure functions, row → problems
// ---------------------------------------------------------------------------

/** A row ready for COPY: values in column order, already PostgreSQL-safe. */
type CleanValue = string | number | null;

/** Collects problems, keeping the first examples of each kind and the totals. */
class ProblemLog {
  #groups = new Map<ProblemKind, ProblemGroup>();

  add(problem: Problem): void {
    let group = this.#groups.get(problem.kind);
    if (!group) {
      group = { kind: problem.kind, ...PROBLEM_KINDS[problem.kind], total: 0, examples: [] };
      this.#groups.set(problem.kind, group);
    }
    group.total++;
    if (group.examples.length < EXAMPLES_PER_KIND) group.examples.push(problem);
  }

  /** Counts `more` problems of a kind beyond those added one by one. */
  count(kind: ProblemKind, more: number): void {
    const group = this.#groups.get(kind);
    if (group) group.total += more;
  }

  get groups(): ProblemGroup[] {
    return [...this.#groups.values()];
  }

  get total(): number {
    return this.groups.reduce((sum, group) => sum + group.total, 0);
  }
}

function rowKey(table: TableSpec, row: unknown[]): string {
  return table.key.map((name) => {
    const value = row[table.columns.findIndex((c) => c.name === name)];
    return typeof value === "string" ? value : preview(value);
  }).join("/");
}

function preview(value: unknown): string {
  const text = value instanceof Uint8Array
    ? `BLOB(${value.length} bytes)`
    : typeof value === "string"
    ? JSON.stringify(value)
    : String(value);
  return text.length > VALUE_PREVIEW_CHARS ? `${text.slice(0, VALUE_PREVIEW_CHARS)}…` : text;
}

/** A value that cannot go to PostgreSQL, and why; one shared instance per kind. */
class Invalid {
  constructor(readonly kind: ProblemKind) {}
}

const INVALID = Object.fromEntries(
  Object.keys(PROBLEM_KINDS).map((kind) => [kind, new Invalid(kind as ProblemKind)]),
) as Record<ProblemKind, Invalid>;

/**
 * Checks one value against its column and returns it in the form PostgreSQL
 * will store, or why it cannot go there. Runs for every value of every row,
 * so it allocates nothing.
 */
function cleanValue(column: ColumnSpec, value: unknown, hasNul: boolean): CleanValue | Invalid {
  if (value === null || (column.type === "json" && value === "")) {
    // The seed stores empty raw_json as SQL NULL; keep that.
    return column.notNull ? INVALID["null-value"] : null;
  }
  if (column.type === "integer") return cleanInteger(value);
  if (typeof value !== "string") return INVALID["not-text"];
  if (hasNul) return INVALID["nul-character"];
  if (column.type === "date") return isCalendarDate(value) ? value : INVALID["invalid-date"];
  if (column.type === "json") return isJsonbText(value) ? value : INVALID["invalid-json"];
  return value;
}

function cleanInteger(value: unknown): number | Invalid {
  // Integers arrive as BigInt; a REAL such as 3.0 is the integer 3.
  const number = typeof value === "bigint"
    ? (value >= INT32_MIN && value <= INT32_MAX ? Number(value) : NaN)
    : typeof value === "number"
    ? value
    : NaN;
  return Number.isInteger(number) && number >= INT32_MIN && number <= INT32_MAX
    ? number
    : INVALID["not-integer"];
}

// Snapshots repeat a few thousand dates many times over; remember verdicts
// (up to a bound, so that a column of garbage cannot grow memory).
const dateVerdicts = new Map<string, boolean>();
const DATE_VERDICTS_MAX = 100_000;

function isCalendarDate(text: string): boolean {
  let verdict = dateVerdicts.get(text);
  if (verdict === undefined) {
    verdict = checkCalendarDate(text);
    if (dateVerdicts.size < DATE_VERDICTS_MAX) dateVerdicts.set(text, verdict);
  }
  return verdict;
}

function checkCalendarDate(text: string): boolean {
  const match = ISO_DATE.exec(text);
  if (!match) return false;
  const [year, month, day] = match.slice(1).map(Number);
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  // Date.UTC maps years 0–99 to 1900–1999; 2000 + year has the same leap rule.
  const daysInMonth = new Date(Date.UTC(year < 100 ? 2000 + year : year, month, 0)).getUTCDate();
  return day <= daysInMonth;
}

// A JSON validator with PostgreSQL's JSONB rules. It decides without building
// anything: JSON.parse would allocate about three times the payload in
// throwaway objects, which is most of this tool's garbage. The text itself
// is sent as written, so numbers such as 12345678901234567890 keep their
// digits.

const IN_ARRAY = 1;
const IN_OBJECT = 2;
// numeric's limits: digits before the decimal point, digits after it.
const NUMERIC_MAX_INTEGER_DIGITS = 131072;
const NUMERIC_MAX_SCALE = 16383;
// numeric_in refuses exponents from INT_MAX / 2 on.
const NUMERIC_MAX_EXPONENT = 1_073_741_823;

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

function skipSpace(text: string, i: number): number {
  for (let c = text.charCodeAt(i); c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;) {
    c = text.charCodeAt(++i);
  }
  return i;
}

/** The code of the `\uXXXX` escape at i, or -1. */
function unicodeEscape(text: string, i: number): number {
  if (text.charCodeAt(i) !== 0x5c || text.charCodeAt(i + 1) !== 0x75) return -1;
  for (let k = i + 2; k < i + 6; k++) if (!isHex(text.charCodeAt(k))) return -1;
  return parseInt(text.slice(i + 2, i + 6), 16);
}

/**
 * Index after the string starting at i (a quote), or -1. JSONB refuses
 * `\u0000` and surrogate escapes that are not a high-low pair.
 */
function skipString(text: string, i: number): number {
  for (let j = i + 1;;) {
    const c = text.charCodeAt(j);
    if (c === 0x22) return j + 1;
    if (c < 0x20 || c !== c) return -1; // control character, or the end (NaN)
    if (c !== 0x5c) {
      j++;
      continue;
    }
    const e = text.charCodeAt(j + 1);
    if (e !== 0x75) {
      // \" \\ \/ \b \f \n \r \t
      if (
        e !== 0x22 && e !== 0x5c && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e &&
        e !== 0x72 && e !== 0x74
      ) return -1;
      j += 2;
      continue;
    }
    const code = unicodeEscape(text, j);
    if (code <= 0 || (code >= 0xdc00 && code <= 0xdfff)) return -1;
    if (code >= 0xd800 && code <= 0xdbff) {
      const low = unicodeEscape(text, j + 6);
      if (low < 0xdc00 || low > 0xdfff) return -1;
      j += 12;
    } else {
      j += 6;
    }
  }
}

/** Index after the number starting at i, or -1; also -1 beyond numeric's range. */
function skipNumber(text: string, i: number): number {
  let j = text.charCodeAt(i) === 0x2d ? i + 1 : i;
  const integerStart = j;
  if (text.charCodeAt(j) === 0x30) j++;
  else if (isDigit(text.charCodeAt(j))) { while (isDigit(text.charCodeAt(j))) j++; }
  else return -1;
  const integerDigits = j - integerStart;
  let fractionDigits = 0;
  if (text.charCodeAt(j) === 0x2e) {
    const fractionStart = ++j;
    while (isDigit(text.charCodeAt(j))) j++;
    fractionDigits = j - fractionStart;
    if (fractionDigits === 0) return -1;
  }
  const mantissaEnd = j;
  let exponent = 0;
  const e = text.charCodeAt(j);
  if (e === 0x65 || e === 0x45) {
    const sign = text.charCodeAt(++j) === 0x2d ? -1 : 1;
    if (text.charCodeAt(j) === 0x2b || text.charCodeAt(j) === 0x2d) j++;
    if (!isDigit(text.charCodeAt(j))) return -1;
    while (isDigit(text.charCodeAt(j))) {
      if (exponent < NUMERIC_MAX_EXPONENT) exponent = exponent * 10 + text.charCodeAt(j) - 0x30;
      j++;
    }
    exponent *= sign;
  }
  if (Math.abs(exponent) >= NUMERIC_MAX_EXPONENT) return -1;
  if (fractionDigits - exponent > NUMERIC_MAX_SCALE) return -1;
  if (integerDigits + exponent > NUMERIC_MAX_INTEGER_DIGITS) {
    // Leading zeros do not count: find the first significant digit.
    let leading = integerDigits + exponent;
    for (let k = integerStart; k < mantissaEnd && leading > NUMERIC_MAX_INTEGER_DIGITS; k++) {
      const c = text.charCodeAt(k);
      if (c === 0x2e) continue;
      if (c !== 0x30) return -1;
      leading--;
    }
  }
  return j;
}

/** Index of the value after an object key and its colon, or -1. */
function skipKey(text: string, i: number): number {
  if (text.charCodeAt(i) !== 0x22) return -1;
  i = skipSpace(text, skipString(text, i));
  return text.charCodeAt(i) === 0x3a ? skipSpace(text, i + 1) : -1;
}

/** True if PostgreSQL's JSONB accepts the text (RFC 8259 plus JSONB's limits). */
function isJsonbText(text: string): boolean {
  const open: number[] = [];
  let i = skipSpace(text, 0);
  for (;;) {
    // A value starts at i.
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      const close = c === 0x7b ? 0x7d : 0x5d;
      i = skipSpace(text, i + 1);
      if (text.charCodeAt(i) !== close) {
        open.push(c === 0x7b ? IN_OBJECT : IN_ARRAY);
        if (c === 0x7b && (i = skipKey(text, i)) < 0) return false;
        continue;
      }
      i++;
    } else if (c === 0x22) {
      i = skipString(text, i);
    } else if (c === 0x2d || isDigit(c)) {
      i = skipNumber(text, i);
    } else if (text.startsWith("true", i) || text.startsWith("null", i)) {
      i += 4;
    } else if (text.startsWith("false", i)) {
      i += 5;
    } else {
      return false;
    }
    if (i < 0) return false;
    // After a value: close containers, or move to the next element.
    for (;;) {
      i = skipSpace(text, i);
      if (open.length === 0) return i === text.length;
      const inside = open[open.length - 1];
      const c = text.charCodeAt(i);
      if (c === 0x2c) {
        i = skipSpace(text, i + 1);
        if (inside === IN_OBJECT && (i = skipKey(text, i)) < 0) return false;
        break;
      }
      if (c !== (inside === IN_OBJECT ? 0x7d : 0x5d)) return false;
      open.pop();
      i++;
    }
  }
}

/** Validates one source row; returns the clean row, or null after logging its problems. */
function validateRow(
  table: TableSpec,
  row: unknown[],
  policy: { invalidJson: InvalidJsonPolicy },
  problems: ProblemLog,
  policies: ProblemLog,
): CleanValue[] | null {
  const nulMask = Number(row[table.columns.length]);
  const clean: CleanValue[] = new Array(table.columns.length);
  let ok = true;
  for (let i = 0; i < table.columns.length; i++) {
    const column = table.columns[i];
    const result = cleanValue(column, row[i], (nulMask & (1 << i)) !== 0);
    if (!(result instanceof Invalid)) {
      clean[i] = result;
    } else if (result.kind === "invalid-json" && policy.invalidJson === "null") {
      clean[i] = null;
      policies.add({
        kind: "invalid-json",
        table: table.name,
        key: rowKey(table, row),
        column: column.name,
        value: preview(row[i]),
      });
    } else {
      ok = false;
      problems.add({
        kind: result.kind,
        table: table.name,
        key: rowKey(table, row),
        column: column.name,
        value: preview(row[i]),
      });
    }
  }
  return ok ? clean : null;
}

// ---------------------------------------------------------------------------
// 5. Load: one transaction, one COPY into staging, set-based writes
// ---------------------------------------------------------------------------

type Sql = postgres.Sql;
type Tx = postgres.TransactionSql;

const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
};
const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;

/** One value in COPY's text format. */
function copyField(value: CleanValue): string {
  if (value === null) return "\\N";
  if (typeof value === "number") return String(value);
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : value;
}

const q = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`;
const columnList = (table: TableSpec, prefix = "") =>
  table.columns.map((c) => prefix + q(c.name)).join(", ");
/** The key as one text (`track_id/snapshot_date/time_range`), as messages show it. */
const keyText = (table: TableSpec, alias: string) =>
  table.key.map((k) => `${alias}.${q(k)}::text`).join(" || '/' || ");
const keyMatch = (table: TableSpec, a: string, b: string) =>
  table.key.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(" AND ");

/**
 * Staging: one temporary table partitioned by source table, so that a single
 * COPY carries the rows of both tables. Each partition holds one table's
 * rows in the target's column types, and lives only in this transaction.
 */
const STAGING = "migrate_stage";
const STAGING_STATISTICS = 10;
const STAGING_COLUMNS: ColumnSpec[] = TABLES.flatMap((t) => t.columns)
  .filter((column, i, all) => all.findIndex((c) => c.name === column.name) === i);
const stagingName = (table: TableSpec) => `${STAGING}_${table.name}`;
/** For each table: where each staging column comes from in its rows (-1: NULL). */
const STAGING_SLOTS = new Map(
  TABLES.map((t) => [t, STAGING_COLUMNS.map((s) => t.columns.findIndex((c) => c.name === s.name))]),
);

function stagingDdl(): string[] {
  const columns = STAGING_COLUMNS.map((c) => `${q(c.name)} ${PG_TYPES[c.type]}`);
  return [
    `CREATE TEMPORARY TABLE ${STAGING} (source TEXT, ${
      columns.join(", ")
    }) PARTITION BY LIST (source) ON COMMIT DROP`,
    ...TABLES.map((t) =>
      `CREATE TEMPORARY TABLE ${stagingName(t)} PARTITION OF ${STAGING}
       FOR VALUES IN ('${t.name}') ON COMMIT DROP`
    ),
  ];
}

/**
 * Payloads are compressed once, in staging, with lz4 where the server has it:
 * PostgreSQL copies a compressed value into the target as it is, and lz4 is
 * much cheaper than the default pglz both ways (the large data set's tracks
 * stage in 4.5 s instead of 6.8 s, and read back twice as fast in the
 * comparison). Without lz4, payloads stay compressed for a first run, where
 * they are copied, and uncompressed when the target already has tracks,
 * where they are mostly compared (a rerun of the large data set: 12.3 s →
 * 10.4 s).
 */
async function chooseStagingStorage(tx: Tx): Promise<void> {
  const [{ filled, lz4 }] = await tx.unsafe(`SELECT
      EXISTS (SELECT FROM ${q(TRACKS.name)}) AS filled,
      EXISTS (SELECT FROM pg_settings
              WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) AS lz4`);
  const storage = lz4 ? "SET COMPRESSION lz4" : filled ? "SET STORAGE EXTERNAL" : null;
  if (storage === null) return;
  for (const column of TRACKS.columns.filter((c) => c.type === "json")) {
    await tx.unsafe(`ALTER TABLE ${stagingName(TRACKS)} ALTER COLUMN ${q(column.name)} ${storage}`);
  }
}

/** One row of `table` as a line of COPY text into the staging table. */
function stagingLine(table: TableSpec, row: CleanValue[]): string {
  let line = table.name;
  for (const slot of STAGING_SLOTS.get(table)!) {
    line += slot < 0 ? "\t\\N" : "\t" + copyField(row[slot]);
  }
  return line + "\n";
}

function targetDdl(table: TableSpec): string {
  const columns = table.columns.map((c) =>
    `${q(c.name)} ${PG_TYPES[c.type]}${c.notNull ? " NOT NULL" : ""}`
  );
  return `CREATE TABLE IF NOT EXISTS ${q(table.name)} (${
    [...columns, ...table.extraDdl].join(", ")
  })`;
}

/**
 * Updates only rows whose values are distinct, so a rerun over unchanged
 * data rewrites nothing and keeps `updated_at`.
 */
function updateSql(table: TableSpec): string {
  const values = table.columns.filter((c) => !table.key.includes(c.name));
  const assignments = values.map((c) => `${q(c.name)} = s.${q(c.name)}`);
  if (table.touch) assignments.push(`${q(table.touch)} = NOW()`);
  return `UPDATE ${q(table.name)} t SET ${assignments.join(", ")}
    FROM ${stagingName(table)} s
    WHERE ${keyMatch(table, "s", "t")} AND ${distinct(values, "s", "t")}`;
}

/**
 * True where two rows' values differ. JSONB equality walks both documents;
 * equal binary images (the usual case: both sides parsed from the same text
 * by the same server) settle it with a memory compare, about twice as fast
 * over a table of payloads. Different images may still hold equal values
 * (1.0 and 1.00), so those rows get the full comparison.
 */
function distinct(columns: ColumnSpec[], a: string, b: string): string {
  const list = (alias: string) => columns.map((c) => `${alias}.${q(c.name)}`).join(", ");
  const values = `(${list(a)}) IS DISTINCT FROM (${list(b)})`;
  if (!columns.some((c) => c.type === "json")) return values;
  return `CASE WHEN ROW(${list(a)})::record *= ROW(${
    list(b)
  })::record THEN false ELSE ${values} END`;
}

/** Inserts the rows the target lacks, in key order so that index inserts stay local. */
function insertSql(table: TableSpec): string {
  return `INSERT INTO ${q(table.name)} (${columnList(table)})
    SELECT ${columnList(table, "s.")} FROM ${stagingName(table)} s
    WHERE NOT EXISTS (SELECT FROM ${q(table.name)} t WHERE ${keyMatch(table, "s", "t")})
    ORDER BY ${table.key.map((k) => `s.${q(k)}`).join(", ")}`;
}

function pruneSql(table: TableSpec): string {
  return `DELETE FROM ${q(table.name)} t
    WHERE NOT EXISTS (SELECT FROM ${stagingName(table)} s WHERE ${keyMatch(table, "s", "t")})`;
}

/** Writes lines to a COPY … FROM STDIN stream in chunks, honouring backpressure. */
async function copyInto(
  tx: Tx,
  target: string,
  lines: Iterable<string>,
  onFlush: () => void,
): Promise<void> {
  const stream = await tx.unsafe(`COPY ${target} FROM STDIN`).writable();
  const finished = new Promise<void>((resolve, reject) => {
    stream.on("finish", resolve);
    stream.on("error", reject);
  });
  // Awaited below; until then, a failure (the connection lost mid-COPY) must
  // not count as an unhandled rejection, which would end the process.
  finished.catch(() => {});
  let chunk = "";
  const flush = async () => {
    if (chunk === "") return;
    // postgres.js's pipeline() misbehaves under Deno; write/drain/end does not.
    // A stream that fails never drains: stop waiting when it finishes or fails.
    if (!stream.write(chunk)) {
      await Promise.race([new Promise((resolve) => stream.once("drain", resolve)), finished]);
    }
    onFlush();
    chunk = "";
  };
  try {
    for (const line of lines) {
      chunk += line;
      if (chunk.length >= COPY_FLUSH_CHARS) await flush();
    }
    await flush();
  } catch (error) {
    // destroy() sends CopyFail, so the connection can roll back cleanly.
    stream.destroy(error as Error);
    await finished.catch(() => {});
    throw error;
  }
  stream.end();
  await finished;
}

/** One table's rows on their way to staging, and what was sent. */
interface StagingStream {
  table: TableSpec;
  lines: Iterator<string>;
  total: number;
  sent: number;
  done: boolean;
  print: Fingerprint;
}

const INTERLEAVE_ROWS = 64;

/**
 * Merges the tables' COPY lines into one stream, each table in proportion to
 * its size. PostgreSQL then parses the tracks' JSONB while JavaScript
 * validates snapshots, instead of each waiting for the other.
 */
function* interleave(streams: StagingStream[]): Generator<string> {
  const fraction = (s: StagingStream) => s.total === 0 ? 1 : s.sent / s.total;
  while (true) {
    const open = streams.filter((s) => !s.done);
    if (open.length === 0) return;
    const next = open.reduce((a, b) => fraction(b) < fraction(a) ? b : a);
    for (let i = 0; i < INTERLEAVE_ROWS; i++) {
      const line = next.lines.next();
      if (line.done) {
        next.done = true;
        break;
      }
      next.sent++;
      yield line.value;
    }
  }
}

/** What validation found, and the keys it needs later. */
interface ValidationLog {
  problems: ProblemLog;
  policies: ProblemLog;
  /** Tracks refused by validation: their snapshots are not orphans. */
  refusedTrackIds: string[];
}

/**
 * Reads, validates and encodes one table as COPY lines for staging; rows
 * with problems are logged and never sent.
 */
function* stagingLines(
  source: Source,
  stream: StagingStream,
  options: Options,
  log: ValidationLog,
): Generator<string> {
  const table = stream.table;
  const keyIndex = table.columns.findIndex((c) => c.name === table.key[0]);
  const fingerprint = fingerprintColumns(table).map((c) => ({
    name: c.name,
    index: table.columns.indexOf(c),
    text: c.type === "text",
  }));
  for (const c of fingerprint) stream.print.sums[c.name] = 0;
  for (const row of readRows(source, table, options.batchSize)) {
    const clean = validateRow(table, row, options, log.problems, log.policies);
    if (!clean) {
      const key = row[keyIndex];
      if (table === TRACKS && typeof key === "string") log.refusedTrackIds.push(key);
      continue;
    }
    stream.print.rows++;
    for (const c of fingerprint) {
      const value = clean[c.index];
      if (value !== null) {
        stream.print.sums[c.name] += c.text ? utf8Length(value as string) : value as number;
      }
    }
    yield stagingLine(table, clean);
  }
}

/**
 * Reads both SQLite tables in one pass, validates every row, and COPYs the
 * clean rows into staging. Throws with every problem found, before anything
 * reaches the target tables.
 */
async function stageSource(
  tx: Tx,
  source: Source,
  options: Options,
): Promise<{ reports: Record<TableName, TableReport>; policies: ProblemLog }> {
  const started = performance.now();
  const log: ValidationLog = {
    problems: new ProblemLog(),
    policies: new ProblemLog(),
    refusedTrackIds: [],
  };
  for (const table of TABLES) {
    for (const duplicate of duplicateSourceKeys(source, table)) {
      log.problems.add({
        kind: "duplicate-key",
        table: table.name,
        key: duplicate.key,
        value: `${duplicate.count} rows`,
      });
    }
  }
  for (const ddl of stagingDdl()) await tx.unsafe(ddl);
  await chooseStagingStorage(tx);

  const streams = TABLES.map((table): StagingStream => {
    const stream: StagingStream = {
      table,
      lines: [].values(),
      total: source.counts[table.name],
      sent: 0,
      done: false,
      print: { rows: 0, sums: {} },
    };
    stream.lines = stagingLines(source, stream, options, log);
    return stream;
  });
  const progress = () => {
    for (const s of streams) {
      options.onProgress?.({ table: s.table.name, done: s.sent, total: s.total });
    }
  };
  await copyInto(tx, STAGING, interleave(streams), progress);
  for (const s of streams) s.sent = s.total;
  progress();
  source.db.exec("COMMIT");
  for (const s of streams) await assertStagedIntact(tx, s.table, s.print);
  const skipped = await checkOrphans(tx, options, log);

  if (log.problems.total > 0) {
    throw new MigrationError(
      "data",
      `${log.problems.total} problem(s) in the SQLite data; nothing was written`,
      "fix the rows named above in SQLite and rerun",
      log.problems.groups,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const reports = {} as Record<TableName, TableReport>;
  for (const s of streams) {
    await analyzeStaging(tx, s.table);
    reports[s.table.name] = {
      table: s.table.name,
      read: s.total,
      inserted: 0,
      updated: 0,
      unchanged: 0,
      skipped: s.table === SNAPSHOTS ? skipped : 0,
      pruned: 0,
      seconds,
    };
  }
  return { reports, policies: log.policies };
}

/**
 * Statistics for the joins on the key; the payload columns need none. A
 * sample of 3,000 rows (statistics target 10) plans these joins as well as the
 * default 30,000 and takes a tenth of the time: 170 ms → 20 ms for medium's
 * tracks, whose wide rows make every sampled page a read.
 */
async function analyzeStaging(tx: Tx, table: TableSpec): Promise<void> {
  const name = stagingName(table);
  const columns = table.key.map(q);
  await tx.unsafe(
    `ALTER TABLE ${name} ${
      columns.map((c) => `ALTER COLUMN ${c} SET STATISTICS ${STAGING_STATISTICS}`).join(", ")
    }`,
  );
  await tx.unsafe(`ANALYZE ${name} (${columns.join(", ")})`);
}

/**
 * Snapshots whose track is not in SQLite, found set-based in the staging
 * tables (SQLite does not enforce the foreign key). They are reported as
 * problems, or with --orphans=skip deleted from staging and reported.
 * Snapshots of tracks that validation refused are not orphans.
 */
async function checkOrphans(tx: Tx, options: Options, log: ValidationLog): Promise<number> {
  const orphan = `NOT EXISTS (SELECT FROM ${
    stagingName(TRACKS)
  } t WHERE t."track_id" = s."track_id")
    AND s."track_id" <> ALL($1::text[])`;
  const key = keyText(SNAPSHOTS, "s");
  const examples = await tx.unsafe(
    `SELECT ${key} AS key, count(*) OVER ()::int AS total FROM ${stagingName(SNAPSHOTS)} s
     WHERE ${orphan} ORDER BY ${key} COLLATE "C" LIMIT ${EXAMPLES_PER_KIND}`,
    [log.refusedTrackIds],
  );
  if (examples.length === 0) return 0;
  const into = options.orphans === "skip" ? log.policies : log.problems;
  for (const row of examples) {
    into.add({ kind: "orphan-snapshot", table: SNAPSHOTS.name, key: row.key });
  }
  into.count("orphan-snapshot", examples[0].total - examples.length);
  if (options.orphans !== "skip") return 0;
  const deleted = await tx.unsafe(`DELETE FROM ${stagingName(SNAPSHOTS)} s WHERE ${orphan}`, [
    log.refusedTrackIds,
  ]);
  return deleted.count;
}

/** What a staged table looked like on the JavaScript side, to prove COPY carried it intact. */
interface Fingerprint {
  rows: number;
  /** Per text column: total UTF-8 bytes; per integer column: sum. */
  sums: Record<string, number>;
}

function fingerprintColumns(table: TableSpec): ColumnSpec[] {
  return table.columns.filter((c) => c.type === "text" || c.type === "integer");
}

/** Bytes of `text` in UTF-8, as PostgreSQL's octet_length counts them. */
function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    // Each half of a surrogate pair adds 1 (4 bytes per pair); other BMP code
    // units add 1 below U+0800 and 2 above.
    bytes += code < 0x800 || (code >= 0xd800 && code <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

/** PostgreSQL's view of the staging table; must equal the JavaScript fingerprint. */
async function stagedFingerprint(tx: Tx, table: TableSpec): Promise<Fingerprint> {
  const columns = fingerprintColumns(table);
  const expressions = columns.map((c) =>
    `coalesce(sum(${c.type === "text" ? `octet_length(${q(c.name)})` : q(c.name)}), 0)::float8 AS ${
      q(c.name)
    }`
  );
  const [row] = await tx.unsafe(
    `SELECT count(*)::float8 AS rows, ${expressions.join(", ")} FROM ${stagingName(table)}`,
  );
  const sums: Record<string, number> = {};
  for (const c of columns) sums[c.name] = Number(row[c.name]);
  return { rows: Number(row.rows), sums };
}

/** Transfer check: what PostgreSQL staged must be what JavaScript sent. */
async function assertStagedIntact(tx: Tx, table: TableSpec, sent: Fingerprint): Promise<void> {
  const staged = await stagedFingerprint(tx, table);
  const same = staged.rows === sent.rows &&
    Object.keys(sent.sums).every((name) => staged.sums[name] === sent.sums[name]);
  if (!same) {
    throw new MigrationError(
      "verification",
      `${table.name}: the rows PostgreSQL received differ from the rows read (sent ${
        JSON.stringify(sent)
      }, staged ${JSON.stringify(staged)}); nothing was written`,
      "report a bug with the SQLite file",
    );
  }
}

/** Below this many new rows, per-row index and key checks cost less than rebuilding. */
const BULK_INSERT_ROWS = 10_000;
const INSUFFICIENT_PRIVILEGE = "42501";

/**
 * Constraints that a bulk load into an empty table may suspend: its foreign
 * keys, and its primary key and unique constraints unless another table's
 * foreign key depends on them. Foreign keys first: they go first and come back
 * last, once the keys they check are indexed.
 */
const SUSPENDABLE_CONSTRAINTS = `
  SELECT c.conname AS name, pg_get_constraintdef(c.oid) AS definition
  FROM pg_constraint c
  WHERE c.conrelid = $1::regclass
    AND (c.contype = 'f' OR (c.contype IN ('p', 'u') AND NOT EXISTS (
      SELECT FROM pg_constraint r WHERE r.contype = 'f' AND r.confrelid = c.conrelid)))
  ORDER BY c.contype = 'f' DESC`;

/**
 * Fresh statistics for a table just filled, so that the foreign key check and
 * the verification plan joins for its real size (autovacuum has not seen it).
 */
async function analyzeKeys(tx: Tx, table: TableSpec): Promise<void> {
  await tx.unsafe(`ANALYZE ${q(table.name)} (${table.key.map(q).join(", ")})`);
}

/**
 * Writes one table: updates changed rows, then inserts missing ones.
 *
 * A bulk load into an empty table drops the table's suspendable constraints,
 * inserts, and re-creates them: one index build and one set-based foreign key
 * check instead of one of each per row. All of it happens inside this
 * transaction, so no one ever sees the table without them, and re-creating
 * validates every row. Without the privilege for that, rows go in one by one.
 */
async function writeTable(
  tx: Tx,
  table: TableSpec,
  diff: Diff,
  staged: number,
): Promise<{ inserted: number; updated: number }> {
  const updated = diff.differ > 0 ? (await tx.unsafe(updateSql(table))).count : 0;
  const insert = async () => {
    const inserted = (await tx.unsafe(insertSql(table))).count;
    if (inserted >= BULK_INSERT_ROWS) await analyzeKeys(tx, table);
    return { inserted, updated };
  };
  const emptyTarget = diff.missing === staged && diff.extra === 0 && diff.differ === 0;
  if (!emptyTarget || staged < BULK_INSERT_ROWS) return insert();
  const constraints = await tx.unsafe(SUSPENDABLE_CONSTRAINTS, [table.name]);
  if (constraints.length === 0) return insert();
  try {
    return await tx.savepoint(async (sp) => {
      for (const c of constraints) {
        await sp.unsafe(`ALTER TABLE ${q(table.name)} DROP CONSTRAINT ${q(c.name)}`);
      }
      const inserted = (await sp.unsafe(
        `INSERT INTO ${q(table.name)} (${columnList(table)})
         SELECT ${columnList(table)} FROM ${stagingName(table)}`,
      )).count;
      await analyzeKeys(sp, table);
      for (const c of [...constraints].reverse()) {
        await sp.unsafe(`ALTER TABLE ${q(table.name)} ADD CONSTRAINT ${q(c.name)} ${c.definition}`);
      }
      return { inserted, updated };
    });
  } catch (error) {
    if ((error as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) throw error;
    return insert();
  }
}

// ---------------------------------------------------------------------------
// 6. Verify: the target equals the staged source, row by row, in SQL
// ---------------------------------------------------------------------------

/** How the target differs from the staged source, per table. */
interface Diff {
  /** Source rows the target lacks. */
  missing: number;
  /** Target rows the source lacks. */
  extra: number;
  /** Rows in both whose values differ. */
  differ: number;
}

const isClean = (diff: Diff) => diff.missing + diff.extra + diff.differ === 0;

/**
 * Staging and target side by side: a full join on the key that keeps only
 * rows that are missing, extra or different. Both the plan of a run and its
 * verification are this one query.
 */
function diffJoin(table: TableSpec): string {
  const k = q(table.key[0]);
  return `FROM ${stagingName(table)} s FULL JOIN ${q(table.name)} t ON ${keyMatch(table, "s", "t")}
    WHERE (t.${k} IS NULL OR s.${k} IS NULL OR ${distinct(table.columns, "s", "t")})`;
}

async function diffTable(tx: Tx, table: TableSpec): Promise<Diff> {
  const k = q(table.key[0]);
  const [row] = await tx.unsafe(`SELECT
      count(*) FILTER (WHERE t.${k} IS NULL)::int AS missing,
      count(*) FILTER (WHERE s.${k} IS NULL)::int AS extra,
      count(*) FILTER (WHERE s.${k} IS NOT NULL AND t.${k} IS NOT NULL)::int AS differ
    ${diffJoin(table)}`);
  return { missing: row.missing, extra: row.extra, differ: row.differ };
}

/** The diff that decides the writes; into an empty table, every staged row is missing. */
async function planTable(tx: Tx, table: TableSpec, staged: number): Promise<Diff> {
  const [{ empty }] = await tx.unsafe(`SELECT NOT EXISTS (SELECT FROM ${q(table.name)}) AS empty`);
  return empty ? { missing: staged, extra: 0, differ: 0 } : diffTable(tx, table);
}

/** The first differing rows by key, in byte order like SQLite's (hence COLLATE "C"). */
async function diffExamples(
  tx: Tx,
  table: TableSpec,
  kind: ProblemKind,
  log: ProblemLog,
  onlyExtra = false,
): Promise<void> {
  const k = q(table.key[0]);
  const key = `coalesce(${keyText(table, "s")}, ${keyText(table, "t")})`;
  const rows = await tx.unsafe(`SELECT ${key} AS key,
      CASE WHEN t.${k} IS NULL THEN 'missing in PostgreSQL'
           WHEN s.${k} IS NULL THEN 'only in PostgreSQL'
           ELSE 'values differ' END AS what,
      count(*) OVER ()::int AS total
    ${diffJoin(table)} ${onlyExtra ? `AND s.${k} IS NULL` : ""}
    ORDER BY ${key} COLLATE "C" LIMIT ${EXAMPLES_PER_KIND}`);
  for (const row of rows) {
    log.add({ kind, table: table.name, key: row.key, value: onlyExtra ? undefined : row.what });
  }
  if (rows.length > 0) log.count(kind, rows[0].total - rows.length);
}

/**
 * The tutorial's checks (counts, JSONB objects, sample query) plus the proof
 * of content: `diffs` must be the diff of the target as it is now.
 */
async function verifyTarget(
  tx: Tx,
  source: Source,
  skipped: Record<TableName, number>,
  diffs: Map<TableSpec, Diff>,
): Promise<Verification> {
  const counts: CountCheck[] = [];
  const mismatches = new ProblemLog();
  for (const table of TABLES) {
    const [{ n }] = await tx.unsafe(`SELECT count(*)::int AS n FROM ${q(table.name)}`);
    const sqlite = source.counts[table.name];
    counts.push({ table: table.name, sqlite, expected: sqlite - skipped[table.name], postgres: n });
    if (!isClean(diffs.get(table)!)) {
      await diffExamples(tx, table, "content-mismatch", mismatches);
    }
  }
  const [{ objects }] = await tx.unsafe(
    `SELECT count(*)::int AS objects FROM tracks
     WHERE raw_json IS NOT NULL AND jsonb_typeof(raw_json) = 'object'`,
  );
  // In primary key order, the scan stops at the first track with an album.
  const [sample] = await tx.unsafe(
    `SELECT name, raw_json->'album'->>'release_date' AS release_date,
            raw_json->>'explicit' AS explicit
     FROM tracks WHERE raw_json ? 'album' ORDER BY track_id LIMIT 1`,
  );
  return {
    ok: mismatches.total === 0 && counts.every((c) => c.expected === c.postgres),
    counts,
    jsonObjects: objects,
    sample: sample
      ? { name: sample.name, releaseDate: sample.release_date, explicit: sample.explicit }
      : null,
    mismatches: mismatches.groups,
  };
}

// ---------------------------------------------------------------------------
// The run: read → validate → load → verify, inside one transaction
// ---------------------------------------------------------------------------

/** Thrown inside the transaction to roll it back after a dry run or verify-only. */
class Rollback {
  constructor(readonly report: Report) {}
}

/**
 * Migrates SQLite to PostgreSQL in one transaction and returns what it did.
 * Throws {@link MigrationError} when data, setup or verification stops it;
 * the target is then exactly as it was.
 *
 * @example
 * ```ts
 * import { migrate } from "./migrate.ts";
 * const report = await migrate({ sqlitePath: "app.db", dryRun: true });
 * for (const t of report.tables) console.log(t.table, t.inserted, t.updated);
 * ```
 */
export async function migrate(options: Partial<Options> = {}): Promise<Report> {
  const resolved: Options = { ...resolveOptions([], {}).options, ...options };
  const started = performance.now();
  const source = openSource(resolved.sqlitePath);
  const sql = connect(resolved);
  // Seconds to let the connection close politely. After a failure nothing is
  // worth waiting for: a query cut off with its connection never settles,
  // and would hold the exit for the whole timeout.
  let closeTimeout = 5;
  try {
    await checkConnection(sql, resolved);
    return await sql.begin(async (tx) => {
      const report = await runInTransaction(tx, source, resolved, started);
      if (resolved.dryRun || resolved.verifyOnly) throw new Rollback(report);
      report.committed = true;
      return report;
    }) as Report;
  } catch (error) {
    if (error instanceof Rollback) return error.report;
    closeTimeout = 0;
    throw asMigrationError(error, resolved.databaseUrl);
  } finally {
    source.db.close();
    await sql.end({ timeout: closeTimeout });
  }
}

/**
 * Compares the target with the SQLite source without writing anything.
 * Same checks as after a migration; `report.ok` says whether they match.
 *
 * @example
 * ```ts
 * import { verify } from "./migrate.ts";
 * const report = await verify({ sqlitePath: "app.db" });
 * if (!report.ok) console.log(report.verification.mismatches);
 * ```
 */
export function verify(options: Partial<Options> = {}): Promise<Report> {
  return migrate({ ...options, verifyOnly: true, dryRun: false });
}

function connect(options: Options): Sql {
  return postgres(options.databaseUrl, {
    max: 1,
    connect_timeout: options.connectTimeout,
    onnotice: () => {},
    // Lets a DBA see the run in pg_stat_activity; PGAPPNAME or the URL still win.
    connection: Deno.env.get("PGAPPNAME") ? {} : { application_name: APPLICATION_NAME },
  });
}

async function checkConnection(sql: Sql, options: Options): Promise<void> {
  try {
    await sql`SELECT 1`;
  } catch (error) {
    throw asMigrationError(error, options.databaseUrl);
  }
}

async function runInTransaction(
  tx: Tx,
  source: Source,
  options: Options,
  started: number,
): Promise<Report> {
  const step = options.onStep ?? (() => {});
  await lockTarget(tx, options.schema, step);
  await prepareTarget(tx, options);

  step("reading SQLite and staging it in PostgreSQL");
  const staged = await stageSource(tx, source, options);
  const reports = new Map(TABLES.map((table) => [table, staged.reports[table.name]]));
  const skipped = {
    tracks: staged.reports.tracks.skipped,
    snapshots: staged.reports.snapshots.skipped,
  };

  step("comparing with PostgreSQL");
  const diffs = new Map<TableSpec, Diff>();
  for (const table of TABLES) {
    const staged = reports.get(table)!.read - reports.get(table)!.skipped;
    diffs.set(table, await planTable(tx, table, staged));
  }
  const extra = [...diffs.values()].some((d) => d.extra > 0);
  if (extra && !options.prune && !options.verifyOnly) {
    const extras = new ProblemLog();
    for (const table of TABLES) await diffExamples(tx, table, "extra-row", extras, true);
    throw new MigrationError(
      "data",
      "PostgreSQL holds rows that SQLite does not have; nothing was written",
      PROBLEM_KINDS["extra-row"].hint,
      extras.groups,
    );
  }

  // When nothing differs, nothing is written and the comparison just made
  // is the verification; otherwise write, then compare again.
  if (!options.verifyOnly && ![...diffs.values()].every(isClean)) {
    for (const table of [...TABLES].reverse()) {
      if (diffs.get(table)!.extra === 0) continue;
      step(`pruning ${table.name} rows that SQLite does not have`);
      reports.get(table)!.pruned = (await tx.unsafe(pruneSql(table))).count;
    }
    for (const table of TABLES) {
      const diff = diffs.get(table)!;
      if (diff.missing + diff.differ === 0) continue;
      const tableStarted = performance.now();
      step(`writing ${table.name}`);
      const report = reports.get(table)!;
      const { inserted, updated } = await writeTable(
        tx,
        table,
        diff,
        report.read - report.skipped,
      );
      report.inserted = inserted;
      report.updated = updated;
      report.seconds += (performance.now() - tableStarted) / 1000;
    }
    step("verifying every row against its source");
    for (const table of TABLES) diffs.set(table, await diffTable(tx, table));
  }
  for (const report of reports.values()) {
    report.unchanged = report.read - report.skipped - report.inserted - report.updated;
  }

  const verification = await verifyTarget(tx, source, skipped, diffs);
  const report: Report = {
    ok: verification.ok,
    mode: options.verifyOnly ? "verify-only" : options.dryRun ? "dry-run" : "migrate",
    committed: false,
    sqlitePath: options.sqlitePath,
    target: maskUrl(options.databaseUrl),
    schema: options.schema,
    tables: [...reports.values()],
    verification,
    policies: staged.policies.groups,
    seconds: (performance.now() - started) / 1000,
  };
  if (!verification.ok && !options.verifyOnly) {
    throw new MigrationError(
      "verification",
      "verification failed: PostgreSQL does not match SQLite; the transaction was rolled back",
      PROBLEM_KINDS["content-mismatch"].hint,
      verification.mismatches,
      report,
    );
  }
  return report;
}

/**
 * One migration per target at a time: a transaction-level advisory lock is
 * released by COMMIT, ROLLBACK or a lost connection, so it cannot leak.
 */
async function lockTarget(tx: Tx, schema: string, step: (line: string) => void): Promise<void> {
  const lockName = `migrate.ts:${schema}`;
  const [{ locked }] = await tx`SELECT pg_try_advisory_xact_lock(hashtext(${lockName})) AS locked`;
  if (locked) return;
  step(`another migration into schema ${schema} is running; waiting for it to finish`);
  await tx`SELECT pg_advisory_xact_lock(hashtext(${lockName}))`;
}

async function prepareTarget(tx: Tx, options: Options): Promise<void> {
  if (options.createSchema) {
    await tx`CREATE SCHEMA IF NOT EXISTS ${tx(options.schema)}`;
  }
  const [{ exists }] = await tx`
    SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ${options.schema}) AS exists`;
  if (!exists) {
    throw new MigrationError(
      "config",
      `PostgreSQL schema ${options.schema} does not exist`,
      "create it, or pass --create-schema",
    );
  }
  // Unqualified names below resolve in the target schema; staging tables
  // are temporary and resolve in pg_temp first.
  await tx`SET LOCAL search_path TO ${tx(options.schema)}`;
  // The diff and the key-ordered insert sort and hash whole tables; with the
  // default 4 MB they spill to disk. This is the server's memory, for this
  // transaction only.
  await tx.unsafe(`SET LOCAL work_mem = '${WORK_MEM}'`);
  await tx.unsafe(`SET LOCAL maintenance_work_mem = '${WORK_MEM}'`);
  if (options.createSchema) {
    for (const table of TABLES) await tx.unsafe(targetDdl(table));
  }
  for (const table of TABLES) await checkTargetColumns(tx, options.schema, table);
  // Readers go on; writers wait until COMMIT, so the rows compared are the rows kept.
  await tx.unsafe(
    `LOCK TABLE ${TABLES.map((t) => q(t.name)).join(", ")} IN SHARE ROW EXCLUSIVE MODE`,
  );
}

async function checkTargetColumns(tx: Tx, schema: string, table: TableSpec): Promise<void> {
  const rows = await tx`
    SELECT column_name, data_type FROM information_schema.columns
    WHERE table_schema = ${schema} AND table_name = ${table.name}`;
  if (rows.length === 0) {
    throw new MigrationError(
      "config",
      `PostgreSQL table ${schema}.${table.name} does not exist`,
      "create the schema first, or pass --create-schema",
    );
  }
  const types = new Map(rows.map((row) => [row.column_name as string, row.data_type as string]));
  for (const column of table.columns) {
    const type = types.get(column.name);
    if (type !== PG_TYPE_NAMES[column.type]) {
      throw new MigrationError(
        "config",
        type === undefined
          ? `PostgreSQL table ${schema}.${table.name} lacks column ${column.name}`
          : `PostgreSQL column ${schema}.${table.name}.${column.name} is ${type}, expected ${
            PG_TYPE_NAMES[column.type]
          }`,
        "the target must have the schema shown by --help (see --create-schema)",
      );
    }
  }
}

const CONNECTION_HINTS: Record<string, string> = {
  ECONNREFUSED: "is PostgreSQL running, and are host and port in DATABASE_URL right?",
  ENOTFOUND: "the host name in DATABASE_URL does not resolve",
  CONNECT_TIMEOUT:
    "the server did not answer in time; check host, port and firewall (or raise --connect-timeout)",
  "28P01": "wrong user name or password in DATABASE_URL",
  "28000":
    "the server refused this client (pg_hba.conf); if it requires TLS, add ?sslmode=require to DATABASE_URL",
  "3D000": "create the database first (createdb NAME), or fix its name in DATABASE_URL",
  "42501": "the user in DATABASE_URL lacks a privilege it needs on the target tables",
  CONNECTION_CLOSED: "the connection was lost; the transaction was rolled back, rerun to complete",
  CONNECTION_DESTROYED:
    "the connection was lost; the transaction was rolled back, rerun to complete",
  ECONNRESET: "the connection was lost; the transaction was rolled back, rerun to complete",
  ECANCELED: "the connection was lost; the transaction was rolled back, rerun to complete",
  EPIPE: "the connection was lost; the transaction was rolled back, rerun to complete",
  "57P01":
    "the server ended the connection (shutdown or pg_terminate_backend); the transaction was rolled back, rerun to complete",
};

// postgres.js reports a server without TLS as a reset during the TLS handshake.
const TLS_REFUSED = /secure TLS connection|SSL/i;
const TLS_REFUSED_HINT =
  "the server does not accept TLS: drop sslmode=require from DATABASE_URL, or turn ssl on in the server";

/** Every failure becomes a MigrationError with the password removed. */
function asMigrationError(error: unknown, url: string): MigrationError {
  if (error instanceof MigrationError) return error;
  const code = (error as { code?: string })?.code ?? "";
  const text = errorMessage(error);
  const message = redact(`PostgreSQL (${maskUrl(url)}): ${text}`, url);
  const hint = (code === "ECONNRESET" && TLS_REFUSED.test(text) ? TLS_REFUSED_HINT : undefined) ??
    CONNECTION_HINTS[code] ??
    "nothing was written: the transaction was rolled back";
  return new MigrationError(code in CONNECTION_HINTS ? "connection" : "config", message, hint);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------
// 7. Report: text and JSON
// ---------------------------------------------------------------------------

/**
 * Renders a report as the text the CLI prints: summary table, verification,
 * policies applied.
 *
 * @example
 * ```ts
 * import { formatReport, migrate } from "./migrate.ts";
 * console.log(formatReport(await migrate({ dryRun: true })));
 * ```
 */
export function formatReport(report: Report): string {
  const lines: string[] = [];
  const header = ["table", "read", "inserted", "updated", "unchanged", "skipped", "pruned", "time"];
  const rows = report.tables.map((t) => [
    t.table,
    ...[t.read, t.inserted, t.updated, t.unchanged, t.skipped, t.pruned].map(String),
    `${t.seconds.toFixed(1)}s`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ");
  lines.push(line(header), ...rows.map(line), "");
  const v = report.verification;
  for (const c of v.counts) {
    const skipped = c.expected === c.sqlite ? "" : ` (${c.sqlite - c.expected} skipped)`;
    lines.push(
      `${c.table}: SQLite=${c.sqlite}${skipped}, PostgreSQL=${c.postgres} ${
        c.expected === c.postgres ? "ok" : "MISMATCH"
      }`,
    );
  }
  lines.push(
    v.mismatches.length === 0
      ? "content: every row in PostgreSQL equals its SQLite source"
      : "content: MISMATCH",
    `${v.jsonObjects} tracks have queryable raw_json objects`,
  );
  if (v.sample) {
    lines.push(
      `Sample track ${
        JSON.stringify(v.sample.name)
      }: release_date=${v.sample.releaseDate}, explicit=${v.sample.explicit}`,
    );
  }
  lines.push(...formatProblems(v.mismatches));
  if (report.policies.length > 0) {
    lines.push("", "Changed by policy:", ...formatProblems(report.policies));
  }
  lines.push("", outcomeLine(report));
  return lines.join("\n");
}

function outcomeLine(report: Report): string {
  const seconds = `${report.seconds.toFixed(1)}s`;
  if (report.mode === "dry-run") {
    return `Dry run: rolled back, PostgreSQL is unchanged (${seconds}).`;
  }
  if (report.mode === "verify-only") {
    return report.ok
      ? `Verified: PostgreSQL matches SQLite (${seconds}).`
      : `Verification failed: PostgreSQL does not match SQLite (${seconds}).`;
  }
  return `Migration committed (${seconds}).`;
}

/**
 * Problems grouped by kind: a title, the first rows by key, the total, the fix.
 *
 * @example
 * ```ts
 * import { formatProblems, MigrationError } from "./migrate.ts";
 * const error = new MigrationError("data", "bad rows");
 * console.log(formatProblems(error.problems).join("\n"));
 * ```
 */
export function formatProblems(groups: ProblemGroup[]): string[] {
  const lines: string[] = [];
  for (const group of groups) {
    lines.push(`${group.title} (${group.total} row${group.total === 1 ? "" : "s"}):`);
    for (const p of group.examples) {
      const where = p.column ? ` column ${p.column}` : "";
      const value = p.value !== undefined ? `: ${p.value}` : "";
      lines.push(`  ${p.table} ${p.key}${where}${value}`);
    }
    if (group.total > group.examples.length) {
      lines.push(`  … and ${group.total - group.examples.length} more`);
    }
    lines.push(`  fix: ${group.hint}`);
  }
  return lines;
}

/** A live progress line on a terminal (never on a pipe): rows per table, rate, ETA. */
function progressPrinter(): (progress: Progress) => void {
  const tables = new Map<TableName, Progress>();
  const started = performance.now();
  let last = 0;
  const encoder = new TextEncoder();
  return (progress) => {
    tables.set(progress.table, progress);
    const now = performance.now();
    const all = [...tables.values()];
    const done = all.reduce((sum, p) => sum + p.done, 0);
    const total = all.reduce((sum, p) => sum + p.total, 0);
    const finished = all.length === TABLES.length && done >= total;
    if (!finished && now - last < 200) return;
    last = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const counts = all.map((p) => `${p.table} ${p.done}/${p.total}`).join("  ");
    const text = `\r${counts}  ${Math.round(rate)} rows/s  ETA ${eta.toFixed(0)}s\x1b[K`;
    Deno.stderr.writeSync(encoder.encode(finished ? `${text}\n` : text));
  };
}

// ---------------------------------------------------------------------------
// 8. CLI
// ---------------------------------------------------------------------------

/**
 * Runs the CLI with the given arguments and returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./migrate.ts";
 * Deno.exit(await main(["--dry-run"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const env = environmentWithDotenv();
  let output: OutputOptions = { help: false, quiet: false, json: false };
  let url = env.DATABASE_URL ?? DEFAULTS.databaseUrl;
  try {
    const resolved = resolveOptions(args, env);
    output = resolved.output;
    url = resolved.options.databaseUrl;
    if (output.help) {
      console.log(USAGE);
      return 0;
    }
    const say = (line: string) => {
      if (!output.quiet && !output.json) console.log(line);
    };
    // Steps go to stderr under --json, so stdout stays one JSON object.
    const step = output.json
      ? (line: string) => output.quiet || console.error(line)
      : (line: string) => say(line);
    const options: Options = {
      ...resolved.options,
      onStep: step,
      onProgress: !output.quiet && Deno.stderr.isTerminal() ? progressPrinter() : undefined,
    };
    say(
      `Migrating ${options.sqlitePath} → ${
        maskUrl(options.databaseUrl)
      } (schema ${options.schema})${
        options.dryRun ? " [dry run]" : options.verifyOnly ? " [verify only]" : ""
      }`,
    );
    const report = await migrate(options);
    if (output.json) console.log(JSON.stringify(report));
    else say(formatReport(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    const failure = error instanceof MigrationError ? error : asMigrationError(error, url);
    if (output.json) {
      console.log(redact(
        JSON.stringify({
          ok: false,
          error: {
            kind: failure.kind,
            message: failure.message,
            hint: failure.hint,
            problems: failure.problems,
          },
          report: failure.report,
        }),
        url,
      ));
    }
    const lines = [
      `error: ${failure.message}`,
      ...(failure.report && !output.json ? [formatReport(failure.report)] : []),
      ...formatProblems(failure.problems),
    ];
    if (failure.hint && failure.problems.length === 0) lines.push(`fix: ${failure.hint}`);
    console.error(redact(lines.join("\n"), url));
    return failure.exitCode;
  }
}

/**
 * V8 grows its young generation to 64 MiB under this workload whatever the
 * data size, and no program can change that once it runs; a worker thread
 * gets its own limit. 12 MiB (3 semi-spaces of 4 MiB) costs no time.
 */
const CLI_YOUNG_GENERATION_MIB = 12;
const CLI_WORKER = "migrate.ts CLI";

/** What an uncaught error, a bug of ours, prints: one line and a fix, never a trace. */
const unexpectedError = (message: string) =>
  `error: unexpected: ${message}; nothing was committed\nfix: please report this as a bug`;

/** The CLI runs in a worker thread, so that its heap has the limit above. */
function runCliInWorker(args: string[]): void {
  // Ctrl-C ends the process; PostgreSQL rolls back the open transaction when
  // the connection drops, so the target stays as it was.
  Deno.addSignalListener("SIGINT", () => {
    console.error("\ninterrupted: the transaction was rolled back, nothing was written");
    Deno.exit(130);
  });
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { role: CLI_WORKER, args },
    resourceLimits: { maxYoungGenerationSizeMb: CLI_YOUNG_GENERATION_MIB },
  });
  worker.on("message", (code: number) => Deno.exit(code));
  worker.on("error", (error: Error) => {
    console.error(unexpectedError(error.message));
    Deno.exit(2);
  });
  worker.on("exit", () => Deno.exit(2));
}

async function cliWorker(args: string[]): Promise<void> {
  // postgres.js 3.4.9 can throw from a timer after the server ends the
  // connection (porsager/postgres#1154, #1208), out of reach of any await.
  // The transaction ended with the connection, so say that and stop.
  // Anything else uncaught is a bug of ours: still one line, never a trace.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    const fromPostgres = /postgres\/src\/connection\.js/.test(String(event.error?.stack));
    console.error(
      fromPostgres
        ? `error: the connection to PostgreSQL was lost (${event.message}); the transaction was rolled back, nothing was written\nfix: ${CONNECTION_HINTS.CONNECTION_CLOSED}`
        : unexpectedError(event.message),
    );
    parentPort!.postMessage(2);
  });
  parentPort!.postMessage(await main(args));
}

if (import.meta.main && isMainThread) runCliInWorker(Deno.args);
if (!isMainThread && workerData?.role === CLI_WORKER) await cliWorker(workerData.args);
