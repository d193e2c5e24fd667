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
  /** Rows sent to PostgreSQL per COPY write. */
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
  table: TableName;
  done: number;
  total: number;
}

/** The two tables the tool moves, in load order. */
export type TableName = "tracks" | "snapshots";

/** Kinds of problem the tool reports; each has a title and a fix in {@link PROBLEM_KINDS}. */
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

/** One offending row. `key` is `track_id` or `track_id/snapshot_date/time_range`. */
export interface Problem {
  kind: ProblemKind;
  table: TableName;
  key: string;
  column?: string;
  value?: string;
}

/** Problems of one kind: the first {@link EXAMPLES_PER_KIND} and the total. */
export interface ProblemGroup {
  kind: ProblemKind;
  title: string;
  hint: string;
  total: number;
  examples: Problem[];
}

/** Per-table outcome, as in pgloader's summary plus inserted/updated/unchanged. */
export interface TableReport {
  table: TableName;
  read: number;
  inserted: number;
  updated: number;
  unchanged: number;
  skipped: number;
  pruned: number;
  seconds: number;
}

/** Row counts of one table on both sides. */
export interface CountCheck {
  table: TableName;
  sqlite: number;
  /** Rows the target should hold: read minus rows skipped by a policy. */
  expected: number;
  postgres: number;
}

/** The result of comparing the target with its source. */
export interface Verification {
  ok: boolean;
  counts: CountCheck[];
  /** Tracks whose `raw_json` is a JSONB object. */
  jsonObjects: number;
  /** The seed's sample query: `raw_json->'album'->>'release_date'`. */
  sample: { name: string; releaseDate: string | null; explicit: string | null } | null;
  /** Rows that differ, are missing, or exist only in the target. */
  mismatches: ProblemGroup[];
}

/** What a run did; returned by {@link migrate} and printed by the CLI. */
export interface Report {
  ok: boolean;
  mode: Mode;
  committed: boolean;
  sqlitePath: string;
  /** The database URL with its password masked. */
  target: string;
  schema: string;
  tables: TableReport[];
  verification: Verification;
  /** Rows changed by an opt-in policy (`--invalid-json=null`, `--orphans=skip`). */
  policies: ProblemGroup[];
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
  batchSize: 2000,
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

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const VALUE_PREVIEW_CHARS = 60;
const COPY_FLUSH_CHARS = 1 << 20;

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
  --batch-size N          rows per COPY write (default ${DEFAULTS.batchSize})
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
  help: boolean;
  quiet: boolean;
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
  db: DatabaseSync;
  counts: Record<TableName, number>;
  /** Whether SQLite itself guarantees the table's key is unique. */
  uniqueKey: Record<TableName, boolean>;
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
  const counts = {} as Record<TableName, number>;
  const uniqueKey = {} as Record<TableName, boolean>;
  for (const table of TABLES) {
    checkSourceColumns(db, table);
    counts[table.name] = Number(
      (db.prepare(`SELECT count(*) AS n FROM "${table.name}"`).get() as { n: number }).n,
    );
    uniqueKey[table.name] = hasUniqueIndexOn(db, table);
  }
  return { db, counts, uniqueKey };
}

function checkSourceColumns(db: DatabaseSync, table: TableSpec): void {
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
}

/** node:sqlite can return rows as arrays (faster); its type declarations lag behind. */
interface ArrayStatement {
  iterate(): IterableIterator<unknown[]>;
  all(): unknown[][];
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
function* readRows(source: Source, table: TableSpec): Generator<unknown[]> {
  const nulChecks = table.columns.map((column, i) =>
    column.type === "integer"
      ? "0"
      : `((coalesce(instr(CAST("${column.name}" AS BLOB), X'00'), 0) > 0) << ${i})`
  );
  const statement = prepareArrays(
    source.db,
    `SELECT ${table.columns.map((c) => `"${c.name}"`).join(", ")}, ${
      nulChecks.join(" | ")
    } FROM "${table.name}"`,
  );
  let read = 0;
  for (const row of statement.iterate()) {
    read++;
    yield row;
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
  return statement.all().map((row) => ({
    key: row.slice(0, -1).map(String).join("/"),
    count: Number(row.at(-1)),
  }));
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

/**
 * Checks one value against its column and returns it in the form PostgreSQL
 * will store, or the kind of problem that stops it.
 */
function cleanValue(
  column: ColumnSpec,
  value: unknown,
  hasNul: boolean,
): { value: CleanValue } | { problem: ProblemKind } {
  if (value === null || (column.type === "json" && value === "")) {
    // The seed stores empty raw_json as SQL NULL; keep that.
    return column.notNull ? { problem: "null-value" } : { value: null };
  }
  if (column.type === "integer") return cleanInteger(value);
  if (typeof value !== "string") return { problem: "not-text" };
  if (hasNul) return { problem: "nul-character" };
  if (column.type === "date") {
    return isCalendarDate(value) ? { value } : { problem: "invalid-date" };
  }
  if (column.type === "json") return isJsonbText(value) ? { value } : { problem: "invalid-json" };
  return { value };
}

function cleanInteger(value: unknown): { value: number } | { problem: ProblemKind } {
  // Integers arrive as BigInt; a REAL such as 3.0 is the integer 3.
  const number = typeof value === "bigint"
    ? (value >= INT32_MIN && value <= INT32_MAX ? Number(value) : NaN)
    : typeof value === "number"
    ? value
    : NaN;
  return Number.isInteger(number) && number >= INT32_MIN && number <= INT32_MAX
    ? { value: number }
    : { problem: "not-integer" };
}

function isCalendarDate(text: string): boolean {
  const match = ISO_DATE.exec(text);
  if (!match) return false;
  const [year, month, day] = match.slice(1).map(Number);
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate() ||
    // Date.UTC maps years 0–99 to 1900–1999; such years follow the same rule.
    (year < 100 && day <= new Date(Date.UTC(2000 + year, month, 0)).getUTCDate());
}

const JSON_ESCAPE = /\\(?:u([0-9a-fA-F]{4})|.)/g;

/**
 * True if PostgreSQL's JSONB accepts the text. The text is sent as written,
 * never re-serialised, so numbers such as 12345678901234567890 keep their
 * digits; JSON.parse only judges it. JSONB additionally rejects `\u0000` and
 * unpaired UTF-16 surrogate escapes, which JavaScript accepts.
 */
function isJsonbText(text: string): boolean {
  try {
    JSON.parse(text);
  } catch {
    return false;
  }
  if (!text.includes("\\u")) return true;
  let pendingHigh = false;
  for (const match of text.matchAll(JSON_ESCAPE)) {
    const code = match[1] === undefined ? -1 : parseInt(match[1], 16);
    const isHigh = code >= 0xd800 && code <= 0xdbff;
    const isLow = code >= 0xdc00 && code <= 0xdfff;
    if (code === 0) return false;
    if (pendingHigh && !isLow) return false;
    if (!pendingHigh && isLow) return false;
    // A high surrogate must be the escape right before its low half.
    pendingHigh = isHigh &&
      text.startsWith("\\u", (match.index ?? 0) + 6);
    if (isHigh && !pendingHigh) return false;
  }
  return !pendingHigh;
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
    if ("value" in result) {
      clean[i] = result.value;
    } else if (result.problem === "invalid-json" && policy.invalidJson === "null") {
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
        kind: result.problem,
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
// 5. Load: one transaction, COPY into staging, set-based upsert
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

const q = (identifier: string) => `"${identifier}"`;
const columnList = (table: TableSpec, prefix = "") =>
  table.columns.map((c) => prefix + q(c.name)).join(", ");
const stagingName = (table: TableSpec) => `migrate_stage_${table.name}`;
/** The key as one text (`track_id/snapshot_date/time_range`), as messages show it. */
const keyText = (table: TableSpec, alias: string) =>
  table.key.map((k) => `${alias}.${q(k)}::text`).join(" || '/' || ");
const keyMatch = (table: TableSpec, a: string, b: string) =>
  table.key.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(" AND ");

/** The staging table mirrors the target's columns; it lives only in this transaction. */
function stagingDdl(table: TableSpec): string {
  return `CREATE TEMPORARY TABLE ${stagingName(table)} (${
    table.columns.map((c) => `${q(c.name)} ${PG_TYPES[c.type]}`).join(", ")
  }) ON COMMIT DROP`;
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
 * Inserts new rows and updates only rows whose values are distinct, so a
 * rerun over unchanged data rewrites nothing and keeps `updated_at`.
 */
function upsertSql(table: TableSpec): string {
  const valueColumns = table.columns.filter((c) => !table.key.includes(c.name));
  const assignments = valueColumns.map((c) => `${q(c.name)} = EXCLUDED.${q(c.name)}`);
  if (table.touch) assignments.push(`${q(table.touch)} = NOW()`);
  return `WITH written AS (
    INSERT INTO ${q(table.name)} (${columnList(table)})
    SELECT ${columnList(table)} FROM ${stagingName(table)}
    ON CONFLICT (${table.key.map(q).join(", ")}) DO UPDATE SET ${assignments.join(", ")}
    WHERE (${columnList(table, `${q(table.name)}.`)}) IS DISTINCT FROM (${
    columnList(table, "EXCLUDED.")
  })
    RETURNING (xmax = 0) AS inserted
  ) SELECT count(*) FILTER (WHERE inserted)::int AS inserted,
           count(*) FILTER (WHERE NOT inserted)::int AS updated FROM written`;
}

/** Target rows whose key the source lacks, first ones by key in byte order (like SQLite). */
function extraRowsSql(table: TableSpec, limit: number): string {
  return `SELECT ${keyText(table, "t")} AS key FROM ${q(table.name)} t
    WHERE NOT EXISTS (SELECT FROM ${stagingName(table)} s WHERE ${keyMatch(table, "s", "t")})
    ORDER BY ${keyText(table, "t")} COLLATE "C" LIMIT ${limit}`;
}

function pruneSql(table: TableSpec): string {
  return `DELETE FROM ${q(table.name)} t
    WHERE NOT EXISTS (SELECT FROM ${stagingName(table)} s WHERE ${keyMatch(table, "s", "t")})`;
}

/** Writes rows to a COPY … FROM STDIN stream in chunks, honouring backpressure. */
async function copyInto(
  tx: Tx,
  table: TableSpec,
  rows: Iterable<CleanValue[]>,
  batchSize: number,
  onBatch: (rows: number) => void,
): Promise<void> {
  const stream = await tx.unsafe(
    `COPY ${stagingName(table)} (${columnList(table)}) FROM STDIN`,
  ).writable();
  const finished = new Promise<void>((resolve, reject) => {
    stream.on("finish", resolve);
    stream.on("error", reject);
  });
  let chunk = "";
  let inChunk = 0;
  const flush = async () => {
    if (chunk === "") return;
    // postgres.js's pipeline() misbehaves under Deno; write/drain/end does not.
    if (!stream.write(chunk)) await new Promise((resolve) => stream.once("drain", resolve));
    onBatch(inChunk);
    chunk = "";
    inChunk = 0;
  };
  try {
    for (const row of rows) {
      chunk += row.map(copyField).join("\t") + "\n";
      inChunk++;
      if (inChunk >= batchSize || chunk.length >= COPY_FLUSH_CHARS) await flush();
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

/** Reads, validates and stages one table; rows with problems are never sent. */
function* cleanRows(
  source: Source,
  table: TableSpec,
  options: Options,
  problems: ProblemLog,
  policies: ProblemLog,
  trackIds: Set<string>,
  stats: { skipped: number },
): Generator<CleanValue[]> {
  const trackIdIndex = table.columns.findIndex((c) => c.name === "track_id");
  for (const row of readRows(source, table)) {
    const clean = validateRow(table, row, options, problems, policies);
    const trackId = row[trackIdIndex];
    if (table === TRACKS) {
      if (typeof trackId === "string") {
        if (trackIds.has(trackId)) {
          problems.add({ kind: "duplicate-key", table: table.name, key: trackId });
          continue;
        }
        trackIds.add(trackId);
      }
    } else if (typeof trackId === "string" && !trackIds.has(trackId)) {
      const problem: Problem = {
        kind: "orphan-snapshot",
        table: table.name,
        key: rowKey(table, row),
      };
      if (options.orphans === "skip") {
        policies.add(problem);
        stats.skipped++;
      } else {
        problems.add(problem);
      }
      continue;
    }
    if (clean) yield clean;
  }
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

function* fingerprinted(
  rows: Iterable<CleanValue[]>,
  table: TableSpec,
  print: Fingerprint,
): Generator<CleanValue[]> {
  const columns = fingerprintColumns(table).map((c) => ({
    name: c.name,
    index: table.columns.indexOf(c),
    text: c.type === "text",
  }));
  for (const c of columns) print.sums[c.name] = 0;
  for (const row of rows) {
    print.rows++;
    for (const c of columns) {
      const value = row[c.index];
      if (value === null) continue;
      print.sums[c.name] += c.text ? utf8Length(value as string) : value as number;
    }
    yield row;
  }
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

// ---------------------------------------------------------------------------
// 6. Verify: the target equals the staged source, row by row, in SQL
// ---------------------------------------------------------------------------

/** Rows missing, extra or different between staging and target, checked set-based. */
function mismatchSql(table: TableSpec, limit: number): string {
  const key = `coalesce(${keyText(table, "s")}, ${keyText(table, "t")})`;
  return `SELECT ${key} AS key,
      CASE WHEN t.${q(table.key[0])} IS NULL THEN 'missing in PostgreSQL'
           WHEN s.${q(table.key[0])} IS NULL THEN 'only in PostgreSQL'
           ELSE 'values differ' END AS what,
      count(*) OVER ()::int AS total
    FROM ${stagingName(table)} s FULL JOIN ${q(table.name)} t ON ${keyMatch(table, "s", "t")}
    WHERE t.${q(table.key[0])} IS NULL OR s.${q(table.key[0])} IS NULL
       OR (${columnList(table, "s.")}) IS DISTINCT FROM (${columnList(table, "t.")})
    ORDER BY ${key} COLLATE "C" LIMIT ${limit}`;
}

async function verifyTarget(
  tx: Tx,
  source: Source,
  skipped: Record<TableName, number>,
): Promise<Verification> {
  const counts: CountCheck[] = [];
  const mismatches = new ProblemLog();
  for (const table of TABLES) {
    const [{ n }] = await tx.unsafe(`SELECT count(*)::int AS n FROM ${q(table.name)}`);
    const sqlite = source.counts[table.name];
    counts.push({ table: table.name, sqlite, expected: sqlite - skipped[table.name], postgres: n });
    const rows = await tx.unsafe(mismatchSql(table, EXAMPLES_PER_KIND));
    for (const row of rows) {
      mismatches.add({
        kind: "content-mismatch",
        table: table.name,
        key: row.key,
        value: row.what,
      });
    }
    const group = mismatches.groups.at(-1);
    if (rows.length > 0 && group) group.total += Number(rows[0].total) - rows.length;
  }
  const [{ objects }] = await tx.unsafe(
    `SELECT count(*)::int AS objects FROM tracks
     WHERE raw_json IS NOT NULL AND jsonb_typeof(raw_json) = 'object'`,
  );
  const [sample] = await tx.unsafe(
    `SELECT name, raw_json->'album'->>'release_date' AS release_date,
            raw_json->>'explicit' AS explicit
     FROM tracks WHERE raw_json ? 'album' ORDER BY track_id COLLATE "C" LIMIT 1`,
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
    throw asMigrationError(error, resolved.databaseUrl);
  } finally {
    source.db.close();
    await sql.end({ timeout: 5 });
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

  const problems = new ProblemLog();
  const policies = new ProblemLog();
  const trackIds = new Set<string>();
  const reports = new Map<TableName, TableReport>();
  const skipped = { tracks: 0, snapshots: 0 };
  for (const table of TABLES) {
    const tableStarted = performance.now();
    step(`reading ${table.name} from SQLite and staging it in PostgreSQL`);
    for (const duplicate of duplicateSourceKeys(source, table)) {
      problems.add({
        kind: "duplicate-key",
        table: table.name,
        key: duplicate.key,
        value: `${duplicate.count} rows`,
      });
    }
    await tx.unsafe(stagingDdl(table));
    const stats = { skipped: 0 };
    const print: Fingerprint = { rows: 0, sums: {} };
    let done = 0;
    const total = source.counts[table.name];
    await copyInto(
      tx,
      table,
      fingerprinted(
        cleanRows(source, table, options, problems, policies, trackIds, stats),
        table,
        print,
      ),
      options.batchSize,
      (rows) => {
        done += rows;
        options.onProgress?.({ table: table.name, done, total });
      },
    );
    options.onProgress?.({ table: table.name, done: total, total });
    skipped[table.name] = stats.skipped;
    await assertStagedIntact(tx, table, print, problems.total);
    await tx.unsafe(`ANALYZE ${stagingName(table)}`);
    reports.set(table.name, {
      table: table.name,
      read: total,
      inserted: 0,
      updated: 0,
      unchanged: 0,
      skipped: stats.skipped,
      pruned: 0,
      seconds: (performance.now() - tableStarted) / 1000,
    });
  }
  source.db.exec("COMMIT");
  if (problems.total > 0) {
    throw new MigrationError(
      "data",
      `${problems.total} problem(s) in the SQLite data; nothing was written`,
      "fix the rows named above in SQLite and rerun",
      problems.groups,
    );
  }

  if (!options.verifyOnly) {
    await handleExtraRows(tx, options, reports, step);
    for (const table of TABLES) {
      const tableStarted = performance.now();
      step(`writing ${table.name}`);
      const [{ inserted, updated }] = await tx.unsafe(upsertSql(table));
      const report = reports.get(table.name)!;
      report.inserted = inserted;
      report.updated = updated;
      report.unchanged = report.read - report.skipped - inserted - updated;
      report.seconds += (performance.now() - tableStarted) / 1000;
    }
  }

  step("verifying every row against its source");
  const verification = await verifyTarget(tx, source, skipped);
  const report: Report = {
    ok: verification.ok,
    mode: options.verifyOnly ? "verify-only" : options.dryRun ? "dry-run" : "migrate",
    committed: false,
    sqlitePath: options.sqlitePath,
    target: maskUrl(options.databaseUrl),
    schema: options.schema,
    tables: [...reports.values()],
    verification,
    policies: policies.groups,
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
  const [{ exists }] =
    await tx`SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ${options.schema}) AS exists`;
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
  if (options.createSchema) {
    for (const table of TABLES) await tx.unsafe(targetDdl(table));
  }
  for (const table of TABLES) await checkTargetColumns(tx, options.schema, table);
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

/** Transfer check: what PostgreSQL staged must be what JavaScript sent. */
async function assertStagedIntact(
  tx: Tx,
  table: TableSpec,
  sent: Fingerprint,
  problemCount: number,
): Promise<void> {
  if (problemCount > 0) return;
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

/** Rows only in PostgreSQL: an error unless --prune deletes them, snapshots first. */
async function handleExtraRows(
  tx: Tx,
  options: Options,
  reports: Map<TableName, TableReport>,
  step: (line: string) => void,
): Promise<void> {
  if (options.prune) {
    for (const table of [...TABLES].reverse()) {
      step(`pruning ${table.name} rows that SQLite does not have`);
      const result = await tx.unsafe(pruneSql(table));
      reports.get(table.name)!.pruned = result.count;
    }
    return;
  }
  const extras = new ProblemLog();
  for (const table of TABLES) {
    const rows = await tx.unsafe(extraRowsSql(table, EXAMPLES_PER_KIND + 1));
    for (const row of rows) extras.add({ kind: "extra-row", table: table.name, key: row.key });
  }
  if (extras.total > 0) {
    throw new MigrationError(
      "data",
      "PostgreSQL holds rows that SQLite does not have; nothing was written",
      PROBLEM_KINDS["extra-row"].hint,
      extras.groups,
    );
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
};

/** Every failure becomes a MigrationError with the password removed. */
function asMigrationError(error: unknown, url: string): MigrationError {
  if (error instanceof MigrationError) return error;
  const code = (error as { code?: string })?.code ?? "";
  const message = redact(`PostgreSQL (${maskUrl(url)}): ${errorMessage(error)}`, url);
  const hint = CONNECTION_HINTS[code] ??
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

/** A live progress line per table on a terminal; nothing on a pipe. */
function progressPrinter(): (progress: Progress) => void {
  const started = new Map<TableName, number>();
  let last = 0;
  const encoder = new TextEncoder();
  return ({ table, done, total }) => {
    const now = performance.now();
    if (!started.has(table)) started.set(table, now);
    if (done < total && now - last < 200) return;
    last = now;
    const seconds = (now - started.get(table)!) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const text = `\r${table.padEnd(9)} ${done}/${total} rows  ${Math.round(rate)} rows/s  ETA ${
      eta.toFixed(0)
    }s\x1b[K`;
    Deno.stderr.writeSync(encoder.encode(done >= total ? `${text}\n` : text));
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
      console.log(JSON.stringify({
        ok: false,
        error: {
          kind: failure.kind,
          message: failure.message,
          hint: failure.hint,
          problems: failure.problems,
        },
        report: failure.report,
      }));
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

if (import.meta.main) {
  // Ctrl-C ends the process; PostgreSQL rolls back the open transaction when
  // the connection drops, so the target stays as it was.
  Deno.addSignalListener("SIGINT", () => {
    console.error("\ninterrupted: the transaction was rolled back, nothing was written");
    Deno.exit(130);
  });
  Deno.exit(await main(Deno.args));
}
