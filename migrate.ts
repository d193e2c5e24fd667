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
import { userInfo } from "node:os";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { checkServerIdentity } from "node:tls";
import { connect as connectTcp, type Socket } from "node:net";
import { Buffer } from "node:buffer";
// Types only: the client itself is imported when a run starts (see
// loadDriver), so the CLI's main thread, which only starts the worker that
// runs it, does not load it too.
import type postgres from "postgres";
import denoJson from "./deno.json" with { type: "json" };

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// 1. Public types and constants
// ---------------------------------------------------------------------------

/** What to do with `raw_json` that is not valid JSON for JSONB. */
export type InvalidJsonPolicy = "fail" | "null";
/** What to do with snapshots whose `track_id` has no track. */
export type OrphanPolicy = "fail" | "skip";
/**
 * Which kind of run: `migrate` commits, `dry-run` does everything and rolls
 * back, `verify-only` compares without writing.
 */
export type Mode = "migrate" | "dry-run" | "verify-only";

/** Everything a run needs; {@link resolveOptions} fills in the defaults. */
export interface Options {
  /** Path of the SQLite database (env `SQLITE_PATH`). */
  sqlitePath: string;
  /**
   * PostgreSQL connection URL or libpq `key=value` string (env `DATABASE_URL`).
   * Used alone when {@link Options.connection} is not given.
   */
  databaseUrl: string;
  /**
   * The connection resolved with libpq's rules (URL, PG* variables, password
   * file, defaults); {@link resolveOptions} fills it in for the CLI.
   */
  connection?: ConnectionSettings;
  /** PostgreSQL schema holding `tracks` and `snapshots`. */
  schema: string;
  /** Create the schema and the tutorial's tables when they do not exist. */
  createSchema: boolean;
  /** Rows read from SQLite per call; more is a little faster and holds more memory. */
  batchSize: number;
  /** `fail` (default) or `null`: store SQL NULL for bad `raw_json`. */
  invalidJson: InvalidJsonPolicy;
  /** `fail` (default) or `skip`: leave orphan snapshots out. */
  orphans: OrphanPolicy;
  /** Delete target rows that the source does not have. */
  prune: boolean;
  /**
   * Take the careful path even where a fast path applies (a first run
   * straight into empty tables, a rerun compared bucket by bucket): stage
   * every row, check it set-based and compare row by row. Same result,
   * slower; the fast paths hand over to it by themselves whenever something
   * needs explaining.
   */
  careful?: boolean;
  /** Migrate and commit, do everything and roll back, or only compare. */
  mode: Mode;
  /**
   * SQLite columns that have no column in PostgreSQL, acknowledged as not
   * migrated: `table.column`, or `column` for every table that has it.
   */
  ignoreColumns: string[];
  /** Write every problem row to this file: JSON lines, or CSV when it ends in `.csv`. */
  rejectFile?: string;
  /** Seconds to wait for a PostgreSQL connection. */
  connectTimeout: number;
  /** Seconds to wait for another run on the same schema; wait without limit when absent. */
  lockTimeout?: number;
  /** Called once connected: the target, and whether TLS is on and verified. */
  onConnect?: (info: ConnectionInfo) => void;
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
  | "out-of-range"
  | "too-long"
  | "not-allowed"
  | "invalid-date"
  | "invalid-timestamp"
  | "too-precise"
  | "invalid-boolean"
  | "nul-character"
  | "invalid-utf8"
  | "null-value"
  | "not-text"
  | "orphan-snapshot"
  | "duplicate-key"
  | "check-violation"
  | "unique-violation"
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
  /** The target's constraint the row violates: its name and definition. */
  constraint?: string;
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

/** How one table's columns were matched between SQLite and PostgreSQL. */
export interface ColumnReport {
  /** The table. */
  table: TableName;
  /** Columns both sides have: read, validated against the target's type, written, verified. */
  migrated: string[];
  /** Target columns SQLite lacks: PostgreSQL fills them (default, NULL, identity). */
  filledByPostgres: string[];
  /** SQLite columns with no place in the target, acknowledged with `--ignore-columns`. */
  ignored: string[];
  /** The target's indexes, constraints and triggers, as found before the run. */
  target: { indexes: number; constraints: number; triggers: string[] };
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
  /** Tracks whose `raw_json` is a JSON object (0 when the target has no `raw_json`). */
  jsonObjects: number;
  /** The seed's sample query, or null when no track has an album. */
  sample: Sample | null;
  /** Rows that differ, are missing, or exist only in the target. */
  mismatches: ProblemGroup[];
  /**
   * Rows whose digests differed from their source's and that were read again
   * and compared by value (equal JSONB stored with other digits, such as 1.00
   * for 1.0, or a canonical form this tool does not know).
   */
  rechecked: number;
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
  /** The PostgreSQL connection as `user@host:port/database`, never the password. */
  target: string;
  /** The PostgreSQL schema written. */
  schema: string;
  /** Per-table column matching: what was migrated, filled by PostgreSQL, ignored. */
  columns: ColumnReport[];
  /** Per-table outcome, in load order. */
  tables: TableReport[];
  /** Counts, JSONB checks and the content comparison. */
  verification: Verification;
  /** Rows changed by an opt-in policy (`--invalid-json=null`, `--orphans=skip`). */
  policies: ProblemGroup[];
  /** Seconds for the whole run. */
  seconds: number;
}

/**
 * Why a run stopped. `exitCode` is 1 for data, 2 for usage/setup/connection,
 * 70 for an internal error (a bug of ours).
 */
export type ErrorKind = "usage" | "config" | "connection" | "data" | "verification" | "internal";

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

  /** 1 for data problems and verification mismatches, 70 for our bugs, 2 otherwise. */
  get exitCode(): number {
    if (this.kind === "internal") return EXIT_INTERNAL;
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

/** Exit code of an internal error, a bug of ours (EX_SOFTWARE in sysexits.h). */
const EXIT_INTERNAL = 70;

/** How many rows of each problem kind are named in messages and reports. */
export const EXAMPLES_PER_KIND = 20;

const PROBLEM_KINDS: Record<ProblemKind, { title: string; hint: string }> = {
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
const VERIFY_ONLY_HINT =
  "SQLite or PostgreSQL changed since the last run: run the migration to make PostgreSQL match SQLite (--prune also deletes the rows only in PostgreSQL)";

/**
 * The kinds of value the tool moves. Each PostgreSQL type it can fill maps
 * to one kind in {@link TYPE_RULES}, which decides how values are validated.
 */
type Kind = "text" | "integer" | "date" | "json" | "timestamp" | "boolean";

/** One of the app's columns: its name and the kind of value it holds. */
interface ColumnSpec {
  name: string;
  kind: Kind;
  /** Its type in the tutorial's schema, for `--create-schema`. */
  create: string;
}

/** A foreign key, as data: the orphan check and the load order come from it. */
interface Reference {
  columns: string[];
  table: TableName;
  /** The referenced table's columns, in the same order. */
  targetColumns: string[];
}

/**
 * One of the app's tables, declared once. Its key, its reference and its
 * columns drive the SQLite SELECT, validation, staging, the upsert, the
 * verification and `--create-schema`; everything else about the target
 * (types and their limits, constraints, indexes, extra columns) is read from
 * PostgreSQL's catalog at run time.
 */
interface TableSpec {
  name: TableName;
  key: string[];
  columns: ColumnSpec[];
  references?: Reference;
  /** Column set to NOW() when a row changes, if the target has it and SQLite does not. */
  touch?: string;
  /** The tutorial's schema beyond the columns: timestamps, checks, indexes. */
  create: { columns: string[]; constraints: string[]; indexes: string[] };
}

const TRACKS: TableSpec = {
  name: "tracks",
  key: ["track_id"],
  columns: [
    { name: "track_id", kind: "text", create: "VARCHAR(64)" },
    { name: "name", kind: "text", create: "TEXT NOT NULL" },
    { name: "artist_name", kind: "text", create: "TEXT NOT NULL" },
    { name: "album_name", kind: "text", create: "TEXT" },
    { name: "duration_ms", kind: "integer", create: "INTEGER" },
    { name: "spotify_url", kind: "text", create: "TEXT" },
    { name: "raw_json", kind: "json", create: "JSONB" },
  ],
  touch: "updated_at",
  create: {
    columns: [
      "created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
      "updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
    ],
    constraints: [],
    indexes: ["tracks_raw_json_idx ON tracks USING GIN (raw_json)"],
  },
};

const SNAPSHOTS: TableSpec = {
  name: "snapshots",
  key: ["track_id", "snapshot_date", "time_range"],
  columns: [
    { name: "track_id", kind: "text", create: "VARCHAR(64)" },
    { name: "snapshot_date", kind: "date", create: "DATE" },
    { name: "time_range", kind: "text", create: "VARCHAR(32)" },
    { name: "rank", kind: "integer", create: "INTEGER NOT NULL" },
  ],
  references: { columns: ["track_id"], table: "tracks", targetColumns: ["track_id"] },
  create: {
    columns: [],
    constraints: ["CHECK (rank > 0)"],
    indexes: [
      "snapshots_date_idx ON snapshots (snapshot_date)",
      "snapshots_time_range_date_idx ON snapshots (time_range, snapshot_date)",
    ],
  },
};

/** Load order: a table comes after the tables it references. */
const TABLES: readonly TableSpec[] = loadOrder([TRACKS, SNAPSHOTS]);

function loadOrder(tables: TableSpec[]): TableSpec[] {
  const ordered: TableSpec[] = [];
  const visit = (table: TableSpec) => {
    if (ordered.includes(table)) return;
    const parent = tables.find((t) => t.name === table.references?.table);
    if (parent && parent !== table) visit(parent);
    ordered.push(table);
  };
  tables.forEach(visit);
  return ordered;
}

/** How one PostgreSQL type is filled: the kind of value, and its limits. */
interface TypeRule {
  /** `pg_type.typname` of the base type (after domains); enums are matched by `typtype`. */
  types: string[];
  kind: Kind;
  /** For integer types: the range. */
  range?: [bigint, bigint];
}

/**
 * The types each kind of value can go to, as pgloader's cast rules make types
 * a table. Anything else is a setup error that names the column and these.
 */
const TYPE_RULES: TypeRule[] = [
  { types: ["text", "varchar", "bpchar", "citext", "enum"], kind: "text" },
  { types: ["int2"], kind: "integer", range: [-32768n, 32767n] },
  { types: ["int4"], kind: "integer", range: [-2147483648n, 2147483647n] },
  { types: ["int8"], kind: "integer", range: [-9223372036854775808n, 9223372036854775807n] },
  { types: ["date"], kind: "date" },
  { types: ["jsonb", "json"], kind: "json" },
  { types: ["timestamptz", "timestamp"], kind: "timestamp" },
  { types: ["bool"], kind: "boolean" },
];

/** What `--help` and errors say each kind accepts, in SQL spelling. */
const KIND_ACCEPTS: Record<Kind, string> = {
  text: "text, varchar(n), char(n), citext or an enum type",
  integer: "smallint, integer or bigint",
  date: "date",
  json: "jsonb or json",
  timestamp: "timestamptz or timestamp",
  boolean: "boolean",
};

const WORK_MEM = "256MB";
const APPLICATION_NAME = "migrate.ts";
const SQLITE_BUSY_TIMEOUT_MS = 10_000;
// Date, hour, minute, second, fraction, offset.
const ISO_TIMESTAMP =
  /^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/;
const VALUE_PREVIEW_CHARS = 60;
// COPY data is written in pieces of about this many characters: larger
// pieces are no faster and make V8 hold more memory.
const COPY_FLUSH_CHARS = 1 << 15;

// ---------------------------------------------------------------------------
// 2. Configuration: flags > environment > .env > defaults, resolved once
// ---------------------------------------------------------------------------

/** One command-line flag, declared once: it drives both the parser and `--help`. */
interface FlagSpec {
  /** The long name, without `--`. */
  name: string;
  type: "string" | "boolean";
  short?: string;
  /** How the value is written in `--help`: `" PATH"` or `"=POLICY"`. */
  value?: string;
  /** One line for `--help`; defaults belong in it. */
  help: string;
}

/** Every flag of the CLI. Adding one here adds it to the parser and to `--help`. */
const FLAGS: readonly FlagSpec[] = [
  {
    name: "sqlite",
    type: "string",
    value: " PATH",
    help: `SQLite database to read (env SQLITE_PATH; default ${DEFAULTS.sqlitePath})`,
  },
  {
    name: "database-url",
    type: "string",
    value: " URL",
    help: `PostgreSQL URL or libpq key=value string (env DATABASE_URL; see below)`,
  },
  {
    name: "schema",
    type: "string",
    value: " NAME",
    help: `PostgreSQL schema holding the tables (default ${DEFAULTS.schema})`,
  },
  {
    name: "create-schema",
    type: "boolean",
    help: "create the schema and tables if they do not exist",
  },
  {
    name: "dry-run",
    type: "boolean",
    help: "do everything inside the transaction, print what would change, roll back",
  },
  {
    name: "verify-only",
    type: "boolean",
    help: "compare the target with SQLite without writing anything",
  },
  {
    name: "prune",
    type: "boolean",
    help: "delete rows that exist in PostgreSQL but not in SQLite",
  },
  {
    name: "ignore-columns",
    type: "string",
    value: " LIST",
    help:
      "SQLite columns with no column in PostgreSQL, not to migrate: table.column or column, comma-separated",
  },
  {
    name: "reject-file",
    type: "string",
    value: " PATH",
    help: "write every problem row to PATH: JSON lines, or CSV when PATH ends in .csv",
  },
  {
    name: "invalid-json",
    type: "string",
    value: "=POLICY",
    help: "fail (default) or null: store SQL NULL for raw_json that is not JSON",
  },
  {
    name: "orphans",
    type: "string",
    value: "=POLICY",
    help: "fail (default) or skip: leave out snapshots whose track is missing",
  },
  {
    name: "batch-size",
    type: "string",
    value: " N",
    help: `rows read from SQLite per call (default ${DEFAULTS.batchSize})`,
  },
  {
    name: "connect-timeout",
    type: "string",
    value: " SEC",
    help:
      `give up connecting after SEC seconds (env PGCONNECT_TIMEOUT; default ${DEFAULTS.connectTimeout})`,
  },
  {
    name: "lock-timeout",
    type: "string",
    value: " SEC",
    help: "give up after SEC seconds waiting for another run on the same schema (default: wait)",
  },
  { name: "quiet", type: "boolean", help: "print only errors" },
  { name: "verbose", type: "boolean", help: "also say where each connection setting came from" },
  { name: "json", type: "boolean", help: "print the report as one JSON object on stdout" },
  { name: "version", type: "boolean", help: "print the version and exit" },
  { name: "help", type: "boolean", short: "h", help: "show this help" },
];

/** Exit codes of the CLI, for `--help` (two to a line) and the README. */
const EXIT_CODES: readonly string[] = [
  "0 success",
  "1 data problem or verification mismatch",
  "2 usage, configuration or connection error",
  `${EXIT_INTERNAL} internal error (a bug: please report it)`,
  "129 SIGHUP, 130 SIGINT (Ctrl-C), 143 SIGTERM: rolled back",
];

// `deno compile` runs the module from a directory named deno-compile-<binary>.
const COMPILED: boolean = import.meta.url.includes("/deno-compile-") ||
  !/^deno(\.exe)?$/.test(Deno.execPath().split(/[\\/]/).at(-1) ?? "");
/** How the user started this program, for the usage text. */
const PROGRAM: string = COMPILED ? "migrate" : "deno run -A migrate.ts";
/** The version in deno.json. */
const VERSION: string = denoJson.version;

function exitCodeHelp(): string {
  const lines = [];
  for (let i = 0; i < EXIT_CODES.length; i += 2) lines.push(EXIT_CODES.slice(i, i + 2).join(", "));
  return lines.join(",\n            ");
}

function flagHelp(): string {
  const lines = FLAGS.map((flag) => {
    const name = `${flag.short ? `-${flag.short}, ` : ""}--${flag.name}${flag.value ?? ""}`;
    return `  ${name.padEnd(24)}${flag.help}`;
  });
  return lines.join("\n");
}

/** What the CLI understands; `--help` prints this. */
export const USAGE: string =
  `migrate.ts ${VERSION}: move the Music Time Machine from SQLite to PostgreSQL

Usage: ${PROGRAM} [options]

Options:
${flagHelp()}

Configuration is read from flags, then the environment, then a .env file in the
current directory (a variable already set wins over .env). The connection follows
libpq: DATABASE_URL (postgresql://… or host=… dbname=…), then PGHOST, PGPORT,
PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGAPPNAME,
PGCONNECT_TIMEOUT, then the password file (PGPASSFILE or ~/.pgpass), then the
defaults ${DEFAULTS.databaseUrl}, sslmode=prefer.
sslmode: disable, allow, prefer (default: TLS if the server offers it), require
(TLS, server NOT verified), verify-ca (certificate checked against sslrootcert),
verify-full (certificate and host name checked).

Exit codes: ${exitCodeHelp()}.
Nothing is committed unless the exit code is 0.

Examples:
  ${PROGRAM}
  ${PROGRAM} --sqlite ~/app/music_time_machine.db --dry-run
  DATABASE_URL='postgresql://app:secret@db.example.com/mtm?sslmode=verify-full' ${PROGRAM}
  PGHOST=/var/run/postgresql PGDATABASE=mtm ${PROGRAM} --verbose
  ${PROGRAM} --verify-only --json
  ${PROGRAM} --schema staging --create-schema --prune
`;

/** How the CLI prints, beside the {@link Options} of the run. */
export interface OutputOptions {
  /** Print the usage and exit. */
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
  /** Print only errors. */
  quiet: boolean;
  /** Say where each connection setting came from. */
  verbose: boolean;
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
    if (error instanceof Deno.errors.NotFound) return Deno.env.toObject();
    throw new MigrationError(
      "config",
      `the ${path} file in the current directory cannot be read: ${errorMessage(error)}`,
      `fix or remove ${path} (settings in the environment or flags need no ${path})`,
    );
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
  let parsed: Record<string, string | boolean | undefined>;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        FLAGS.map((flag) => [
          flag.name,
          flag.short ? { type: flag.type, short: flag.short } : { type: flag.type },
        ]),
      ),
    }).values;
  } catch (error) {
    throw new MigrationError("usage", errorMessage(error), "see --help");
  }
  const text = (name: string) => parsed[name] as string | undefined;
  const flag = (name: string) => (parsed[name] as boolean | undefined) ?? false;
  const urlFlag = text("database-url");
  const connectTimeoutFlag = text("connect-timeout");
  const connection = resolveConnection(
    urlFlag ?? env.DATABASE_URL,
    urlFlag !== undefined ? "flag" : "DATABASE_URL",
    env,
  );
  if (connectTimeoutFlag !== undefined) {
    connection.connectTimeout = positiveInteger("--connect-timeout", connectTimeoutFlag, 0);
    connection.sources.connectTimeout = "flag";
  }
  const lockTimeout = text("lock-timeout");
  const options: Options = {
    sqlitePath: text("sqlite") ?? env.SQLITE_PATH ?? DEFAULTS.sqlitePath,
    databaseUrl: urlFlag ?? env.DATABASE_URL ?? DEFAULTS.databaseUrl,
    connection,
    schema: text("schema") ?? DEFAULTS.schema,
    createSchema: flag("create-schema"),
    batchSize: positiveInteger("--batch-size", text("batch-size"), DEFAULTS.batchSize),
    invalidJson: oneOf("--invalid-json", text("invalid-json"), ["fail", "null"] as const),
    orphans: oneOf("--orphans", text("orphans"), ["fail", "skip"] as const),
    prune: flag("prune"),
    mode: flag("dry-run") ? "dry-run" : flag("verify-only") ? "verify-only" : "migrate",
    ignoreColumns: (text("ignore-columns") ?? "").split(",").map((name) => name.trim())
      .filter((name) => name !== ""),
    rejectFile: text("reject-file"),
    connectTimeout: connection.connectTimeout,
    ...(lockTimeout === undefined
      ? {}
      : { lockTimeout: positiveInteger("--lock-timeout", lockTimeout, 0) }),
  };
  if (parsed["dry-run"] && parsed["verify-only"]) {
    throw new MigrationError("usage", "--dry-run and --verify-only exclude each other", "pick one");
  }
  return {
    options,
    output: {
      help: flag("help"),
      version: flag("version"),
      quiet: flag("quiet"),
      verbose: flag("verbose"),
      json: flag("json"),
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

// --- The connection, resolved as libpq resolves it -------------------------

/** libpq's TLS modes; `prefer` is the default, as in libpq. */
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
const SSL_MODES: readonly SslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

/** Where a connection setting came from: the flag, a variable, the password file, or a default. */
export type SettingSource =
  | "flag"
  | "DATABASE_URL"
  | "PGHOST"
  | "PGPORT"
  | "PGDATABASE"
  | "PGUSER"
  | "PGPASSWORD"
  | "PGSSLMODE"
  | "PGSSLROOTCERT"
  | "PGAPPNAME"
  | "PGCONNECT_TIMEOUT"
  | "passfile"
  | "default";

/** The connection, fully resolved; {@link describeConnection} prints it without the password. */
export interface ConnectionSettings {
  /** Host name, IP address, or the directory of a Unix socket (starts with `/`). */
  host: string;
  /** TCP port, or the number in the socket's file name `.s.PGSQL.<port>`. */
  port: number;
  /** Database name. */
  database: string;
  /** Role name. */
  user: string;
  /** Password, if any source gave one. Never printed. */
  password?: string;
  /** TLS mode. */
  sslmode: SslMode;
  /** CA certificates for `verify-ca`/`verify-full` (`system`: the system's trusted roots). */
  sslrootcert: string;
  /** Shown in `pg_stat_activity`. */
  applicationName: string;
  /** Seconds to wait for the connection. */
  connectTimeout: number;
  /** Which source decided each setting. */
  sources: Record<ConnectionPart, SettingSource>;
  /** Things the user should know (a password file ignored for its permissions). */
  warnings: string[];
}

/** The settings {@link ConnectionSettings.sources} names. */
export type ConnectionPart =
  | "host"
  | "port"
  | "database"
  | "user"
  | "password"
  | "sslmode"
  | "sslrootcert"
  | "applicationName"
  | "connectTimeout";

/** Keyword of libpq (URL parameter or conninfo key) → our part, and its PG* variable. */
const CONNECTION_KEYWORDS: Record<string, { part: ConnectionPart; env: SettingSource }> = {
  host: { part: "host", env: "PGHOST" },
  port: { part: "port", env: "PGPORT" },
  dbname: { part: "database", env: "PGDATABASE" },
  user: { part: "user", env: "PGUSER" },
  password: { part: "password", env: "PGPASSWORD" },
  sslmode: { part: "sslmode", env: "PGSSLMODE" },
  sslrootcert: { part: "sslrootcert", env: "PGSSLROOTCERT" },
  application_name: { part: "applicationName", env: "PGAPPNAME" },
  connect_timeout: { part: "connectTimeout", env: "PGCONNECT_TIMEOUT" },
};

const URL_SCHEME = /^postgres(?:ql)?:\/\//i;
const DEFAULT_PORT = 5432;
const DEFAULT_HOST = "localhost";
const DEFAULT_DATABASE = "music_time_machine_pg";

/** libpq keyword → value, as written in a URL or a conninfo string. */
type ConnectionWords = Record<string, string>;

function decodeUriPart(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // libpq refuses bad percent-encoding; a password with a bare % is more
    // likely meant as written.
    return text;
  }
}

/**
 * Splits a postgresql:// URL into libpq keywords. The user info ends at the
 * last `@` of the authority, so `p@ss@word` written unencoded still works;
 * `/`, `?` and `#` in a password must be percent-encoded (as with libpq).
 */
function parseConnectionUrl(url: string): ConnectionWords {
  const words: ConnectionWords = {};
  const rest = url.replace(URL_SCHEME, "");
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const afterAuthority = authorityEnd < 0 ? "" : rest.slice(authorityEnd);
  const at = authority.lastIndexOf("@");
  if (unencodedUserInfo(afterAuthority)) {
    // The password's / or ? ended the authority early: what follows would be
    // read (and printed) as port, database or setting. Never echo it.
    throw new MigrationError(
      "config",
      "DATABASE_URL's password (or user name) holds a / or ? that is not percent-encoded, so the URL cannot be read",
      "percent-encode them in the URL (/ as %2F, ? as %3F, @ as %40), or give the password in PGPASSWORD or ~/.pgpass",
    );
  }
  if (at >= 0) {
    const userInfo = authority.slice(0, at);
    const colon = userInfo.indexOf(":");
    const user = colon < 0 ? userInfo : userInfo.slice(0, colon);
    if (user) words.user = decodeUriPart(user);
    if (colon >= 0) words.password = decodeUriPart(userInfo.slice(colon + 1));
  }
  const hostPort = authority.slice(at + 1);
  if (hostPort.includes(",")) {
    throw new MigrationError(
      "config",
      "DATABASE_URL names several hosts; this tool connects to one",
      "keep one host in DATABASE_URL",
    );
  }
  const hostMatch = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(hostPort)!;
  const host = decodeUriPart(hostMatch[1].replace(/^\[(.*)\]$/, "$1"));
  if (host) words.host = host;
  if (hostMatch[2]) words.port = hostMatch[2];
  const query = afterAuthority.indexOf("?");
  const path = query < 0 ? afterAuthority : afterAuthority.slice(0, query);
  const database = decodeUriPart(path.replace(/^\//, ""));
  if (database) words.dbname = database;
  if (query >= 0) {
    for (const pair of afterAuthority.slice(query + 1).split("&")) {
      if (!pair) continue;
      const eq = pair.indexOf("=");
      // As libpq: a + stays a + (only %XX is decoded).
      const key = decodeUriPart(eq < 0 ? pair : pair.slice(0, eq));
      words[key] = decodeUriPart(eq < 0 ? "" : pair.slice(eq + 1));
    }
  }
  return words;
}

/**
 * Whether the text after a URL's authority holds the rest of a user info
 * that an unencoded `/` or `?` cut short: an `@` in the path (a database name
 * holds none unencoded), or in a query item that is no setting this tool
 * takes (`?user=me@example` is one; `?Sec=ret@host` is a password's tail).
 */
function unencodedUserInfo(afterAuthority: string): boolean {
  const query = afterAuthority.indexOf("?");
  const path = query < 0 ? afterAuthority : afterAuthority.slice(0, query);
  if (path.includes("@")) return true;
  if (query < 0) return false;
  return afterAuthority.slice(query + 1).split("&").some((item) => {
    const key = item.includes("=") ? item.slice(0, item.indexOf("=")) : item;
    return item.includes("@") && !(key in CONNECTION_KEYWORDS || key in TOLERATED_KEYWORDS);
  });
}

// A conninfo value: single-quoted with \' and \\ escapes, or bare up to white space.
const CONNINFO_PAIR = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))/y;

/** Parses libpq's `key=value` form: `host=db port=5432 password='it''s'`. */
function parseConninfo(text: string): ConnectionWords {
  const words: ConnectionWords = {};
  CONNINFO_PAIR.lastIndex = 0;
  while (CONNINFO_PAIR.lastIndex < text.trimEnd().length) {
    const start = CONNINFO_PAIR.lastIndex;
    const match = CONNINFO_PAIR.exec(text);
    if (!match) {
      throw new MigrationError(
        "config",
        `DATABASE_URL is neither a postgresql:// URL nor key=value pairs (stopped at character ${
          start + 1
        })`,
        "write it as postgresql://user:password@host:port/db or host=… dbname=… user=…",
      );
    }
    words[match[1]] = (match[2] ?? match[3]).replace(/\\(.)/g, "$1");
  }
  return words;
}

/**
 * libpq settings taken without effect, with the values that ask for nothing
 * this tool does not do anyway: hosted services' URLs carry them (Neon's:
 * `sslmode=require&channel_binding=require`). Any other value is refused
 * with its reason: the driver cannot meet it.
 */
const TOLERATED_KEYWORDS: Record<string, { values: string[]; refused: string; fix: string }> = {
  channel_binding: {
    values: ["disable", "prefer"],
    refused: "this tool's PostgreSQL driver (postgres.js) cannot bind SCRAM to the TLS channel",
    fix:
      "remove channel_binding=require and use sslmode=verify-full (add sslrootcert=system for a public CA, as Neon's): it verifies the server before authenticating",
  },
  gssencmode: {
    values: ["disable", "prefer"],
    refused: "this tool cannot use GSSAPI encryption",
    fix: "remove gssencmode, and use sslmode for an encrypted connection",
  },
  target_session_attrs: {
    values: ["any", "read-write", "primary"],
    refused: "this tool connects to one host and writes to it",
    fix: "remove target_session_attrs, and name the primary server's host",
  },
};

function parseConnectionString(text: string): ConnectionWords {
  const words = URL_SCHEME.test(text) ? parseConnectionUrl(text) : parseConninfo(text);
  for (const [key, value] of Object.entries(words)) {
    const tolerated = TOLERATED_KEYWORDS[key];
    if (tolerated && !tolerated.values.includes(value)) {
      throw new MigrationError(
        "config",
        `DATABASE_URL asks for ${key}=${value}, but ${tolerated.refused}`,
        tolerated.fix,
      );
    }
    if (tolerated) delete words[key];
  }
  for (const key of Object.keys(words)) {
    if (!(key in CONNECTION_KEYWORDS)) {
      throw new MigrationError(
        "config",
        `DATABASE_URL has a setting this tool does not know: ${key}`,
        `use only ${Object.keys(CONNECTION_KEYWORDS).join(", ")}`,
      );
    }
  }
  return words;
}

/**
 * The connection settings, resolved as libpq does: the URL or conninfo
 * string first, then the PG* variables, then the password file, then the
 * defaults (the tutorial's host and database). An empty string counts as
 * unset, for DATABASE_URL as for PG* variables.
 */
function resolveConnection(
  text: string | undefined,
  textSource: "flag" | "DATABASE_URL",
  env: Record<string, string | undefined>,
): ConnectionSettings {
  const words = text ? parseConnectionString(text) : {};
  const sources = {} as Record<ConnectionPart, SettingSource>;
  const values = {} as Record<ConnectionPart, string | undefined>;
  for (const [keyword, { part, env: variable }] of Object.entries(CONNECTION_KEYWORDS)) {
    if (words[keyword] !== undefined && words[keyword] !== "") {
      values[part] = words[keyword];
      sources[part] = textSource;
    } else if (env[variable]) {
      values[part] = env[variable];
      sources[part] = variable;
    }
  }
  const warnings: string[] = [];
  const home = env.HOME;
  const fallback = (part: ConnectionPart, value: string) => {
    if (values[part] !== undefined) return values[part]!;
    sources[part] = "default";
    return value;
  };
  const host = fallback("host", DEFAULT_HOST);
  const port = Number(fallback("port", String(DEFAULT_PORT)));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MigrationError(
      "config",
      `the port ${values.port} (from ${sources.port}) is not a port number`,
      "use a number from 1 to 65535",
    );
  }
  const database = fallback("database", DEFAULT_DATABASE);
  const user = fallback("user", env.USER ?? env.LOGNAME ?? osUser());
  const sslmode = fallback("sslmode", "prefer") as SslMode;
  if (!SSL_MODES.includes(sslmode)) {
    throw new MigrationError(
      "config",
      `sslmode ${sslmode} (from ${sources.sslmode}) is not one of ${SSL_MODES.join(", ")}`,
      "prefer is libpq's default; verify-full also checks the server's certificate and name",
    );
  }
  const sslrootcert = fallback("sslrootcert", `${home ?? "~"}/.postgresql/root.crt`);
  const applicationName = fallback("applicationName", APPLICATION_NAME);
  const connectTimeout = Number(fallback("connectTimeout", String(DEFAULTS.connectTimeout)));
  if (!Number.isInteger(connectTimeout)) {
    throw new MigrationError(
      "config",
      `connect_timeout ${values.connectTimeout} (from ${sources.connectTimeout}) is not a whole number of seconds`,
      "give whole seconds, e.g. PGCONNECT_TIMEOUT=10 (0 waits without limit)",
    );
  }
  let password = values.password;
  if (password === undefined) {
    const file = env.PGPASSFILE || (home ? `${home}/.pgpass` : undefined);
    password = file ? passwordFromFile(file, { host, port, database, user }, warnings) : undefined;
    if (password !== undefined) sources.password = "passfile";
  }
  sources.password ??= "default";
  return {
    sources: Object.fromEntries(
      Object.values(CONNECTION_KEYWORDS).map(({ part }) => [part, sources[part]]),
    ) as Record<ConnectionPart, SettingSource>,
    host,
    port,
    database,
    user,
    password,
    sslmode,
    sslrootcert,
    applicationName,
    // libpq reads 0 (and negative values) as "wait forever"; postgres.js needs a number.
    connectTimeout: connectTimeout > 0 ? connectTimeout : 24 * 3600,
    warnings,
  };
}

/** The operating system's user name, libpq's default role name. */
function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "postgres";
  }
}

// Group and other permission bits: libpq ignores a password file that has any.
const PASSFILE_OTHERS = 0o077;

/**
 * The password for this connection from a libpq password file: lines
 * `host:port:database:user:password`, `*` matches anything, `\:` and `\\`
 * escape, the first matching line wins, and `localhost` also matches a
 * Unix socket. A file others may read is ignored, with a warning, as libpq does.
 */
function passwordFromFile(
  path: string,
  target: { host: string; port: number; database: string; user: string },
  warnings: string[],
): string | undefined {
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (!info.isFile) return undefined;
    if (info.mode !== null && (info.mode & PASSFILE_OTHERS) !== 0) {
      warnings.push(
        `warning: password file ${path} has group or world access and is ignored; chmod 0600 ${path}`,
      );
      return undefined;
    }
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  const hosts = target.host.startsWith("/") ? [target.host, DEFAULT_HOST] : [target.host];
  const wanted = [hosts, [String(target.port)], [target.database], [target.user]];
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const fields = splitPassfileLine(line);
    if (fields.length < 5) continue;
    const matches = wanted.every((accepted, i) =>
      fields[i] === "*" || accepted.includes(fields[i])
    );
    if (matches) return fields.slice(4).join(":");
  }
  return undefined;
}

/** Splits one password file line at unescaped colons, removing the escapes. */
function splitPassfileLine(line: string): string[] {
  const fields = [""];
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && i + 1 < line.length) fields[fields.length - 1] += line[++i];
    else if (c === ":" && fields.length < 5) fields.push("");
    else fields[fields.length - 1] += c;
  }
  return fields;
}

/**
 * The connection as people read it: `user@host:port/database`, never the
 * password.
 *
 * @example
 * ```ts
 * import { describeConnection, resolveOptions } from "./migrate.ts";
 * const { options } = resolveOptions([], { DATABASE_URL: "postgresql://app:secret@db/mtm" });
 * describeConnection(options.connection!); // "app@db:5432/mtm"
 * ```
 */
export function describeConnection(connection: ConnectionSettings): string {
  const host = connection.host.includes(":") ? `[${connection.host}]` : connection.host;
  return `${connection.user}@${host}:${connection.port}/${connection.database}`;
}

/** One line per setting: its value (never the password's) and where it came from. */
function describeSources(connection: ConnectionSettings): string[] {
  return (Object.keys(connection.sources) as ConnectionPart[]).map((part) => {
    const value = part === "password"
      ? connection.password === undefined ? "(none)" : "***"
      : String(connection[part]);
    return `  ${part.padEnd(16)}${value}  (${connection.sources[part]})`;
  });
}

/**
 * The URL or key=value string with its password replaced by `***`, safe to
 * print. It is parsed, not pattern-matched: a password with unencoded `@` or
 * `:` and `password=` parameters are masked too.
 *
 * @example
 * ```ts
 * import { maskUrl } from "./migrate.ts";
 * maskUrl("postgresql://app:secret@db/mtm"); // "postgresql://app:***@db/mtm"
 * maskUrl("host=db password='x y'"); // "host=db password=***"
 * ```
 */
export function maskUrl(url: string): string {
  if (!URL_SCHEME.test(url)) {
    try {
      return Object.entries(parseConninfo(url))
        .map(([key, value]) => `${key}=${key === "password" ? "***" : conninfoValue(value)}`)
        .join(" ");
    } catch {
      return "(a connection string that cannot be parsed)";
    }
  }
  // The same split as parseConnectionUrl, keeping everything but the password as written.
  const scheme = URL_SCHEME.exec(url)![0];
  const rest = url.slice(scheme.length);
  const authorityEnd = rest.search(/[/?]/);
  let authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd < 0 ? "" : rest.slice(authorityEnd);
  const at = authority.lastIndexOf("@");
  const colon = authority.slice(0, Math.max(at, 0)).indexOf(":");
  if (at >= 0 && colon >= 0) authority = `${authority.slice(0, colon)}:***${authority.slice(at)}`;
  const query = tail.indexOf("?");
  if (query < 0) return `${scheme}${authority}${tail}`;
  const pairs = tail.slice(query + 1).split("&").map((pair) =>
    decodeUriPart(pair.split("=")[0]) === "password" ? "password=***" : pair
  );
  return `${scheme}${authority}${tail.slice(0, query)}?${pairs.join("&")}`;
}

/** A conninfo value, quoted where libpq needs quotes. */
function conninfoValue(value: string): string {
  return /^[^\s'\\]+$/.test(value) ? value : `'${value.replace(/['\\]/g, "\\$&")}'`;
}

/** Passwords shorter than this are removed only where they stand beside `:…@` or `password=`. */
const SHORT_SECRET = 4;

/**
 * A safety net over error text: removes the password in every spelling it
 * may have (as written, percent-encoded). Display strings are built without
 * it in the first place; a very short password is removed only in URL and
 * key=value positions, so that messages stay readable.
 */
function redact(text: string, connection: ConnectionSettings | undefined): string {
  const password = connection?.password;
  if (!password) return text;
  // As written, percent-encoded, and as it stands inside a JSON string.
  const spellings = [
    ...new Set([password, encodeURIComponent(password), JSON.stringify(password).slice(1, -1)]),
  ];
  let redacted = text;
  for (const secret of spellings) {
    if (secret.length >= SHORT_SECRET) {
      redacted = redacted.replaceAll(secret, "***");
    } else {
      redacted = redacted
        .replaceAll(`:${secret}@`, ":***@")
        .replaceAll(`password=${secret}`, "password=***")
        .replaceAll(`password='${secret}'`, "password=***");
    }
  }
  return redacted;
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// 3. Read: SQLite, read-only, one read transaction, streaming
// ---------------------------------------------------------------------------

/** One SQLite table as found: its columns and rows. */
interface SourceTable {
  /** Column names in SQLite's order. */
  columns: string[];
  rows: number;
  /** Whether SQLite itself guarantees the table's key is unique. */
  uniqueKey: boolean;
  /** Whether rows can be paged by rowid (not a WITHOUT ROWID table, no column named rowid). */
  pageable: boolean;
}

/** SQLite source opened read-only inside one read transaction. */
interface Source {
  path: string;
  db: DatabaseSync;
  tables: Record<TableName, SourceTable>;
  /** The file stores text as UTF-16 (PRAGMA encoding): its sizes count 2 bytes a unit. */
  utf16: boolean;
  /** Per table, the statement that reads one row's text as SQLite holds it (see {@link textFaults}). */
  rawText: Map<TableName, ArrayStatement>;
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
    const tables = {} as Record<TableName, SourceTable>;
    for (const table of TABLES) tables[table.name] = describeSourceTable(db, table);
    const [{ encoding }] = db.prepare("PRAGMA encoding").all() as { encoding: string }[];
    return { path, db, tables, utf16: encoding !== "UTF-8", rawText: new Map() };
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

/** A SQLite identifier in double quotes (SQLite and PostgreSQL agree on this). */
const q = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`;

function describeSourceTable(db: DatabaseSync, table: TableSpec): SourceTable {
  const columns = db.prepare(`PRAGMA table_info(${q(table.name)})`).all()
    .map((row) => String(row.name));
  if (columns.length === 0) {
    throw new MigrationError(
      "config",
      `SQLite database has no table ${table.name}`,
      "check SQLITE_PATH points at the Music Time Machine database",
    );
  }
  const missingKey = table.key.filter((name) => !columns.includes(name));
  if (missingKey.length > 0) {
    throw new MigrationError(
      "config",
      `SQLite table ${table.name} lacks its key column ${missingKey.join(", ")}`,
      `the app's ${table.name} table has ${table.key.join(", ")}; check SQLITE_PATH`,
    );
  }
  const [info] = db.prepare(`PRAGMA table_list(${q(table.name)})`).all();
  const rows = Number(
    (db.prepare(`SELECT count(*) AS n FROM ${q(table.name)}`).get() as { n: number }).n,
  );
  return {
    columns,
    rows,
    uniqueKey: hasUniqueIndexOn(db, table),
    pageable: Number(info?.wr) === 0 && !columns.includes("rowid"),
  };
}

/** node:sqlite can return rows as arrays (faster); its type declarations lag behind. */
interface ArrayStatement {
  iterate(): IterableIterator<unknown[]>;
  all(...params: unknown[]): unknown[][];
}

/**
 * Prepares a statement that yields arrays and reads integers as BigInt:
 * node:sqlite's iterate() otherwise stops silently at an integer beyond 2^53.
 * With `bigInts` false they are numbers (no allocation per integer), and
 * all() throws a RangeError at an integer beyond 2^53.
 */
function prepareArrays(db: DatabaseSync, text: string, bigInts = true): ArrayStatement {
  const statement = db.prepare(text) as StatementSync & { setReturnArrays(on: boolean): void };
  statement.setReturnArrays(true);
  statement.setReadBigInts(bigInts);
  return statement as unknown as ArrayStatement;
}

/** True if some UNIQUE index or primary key uses only key columns. */
function hasUniqueIndexOn(db: DatabaseSync, table: TableSpec): boolean {
  const indexes = db.prepare(`PRAGMA index_list(${q(table.name)})`).all();
  return indexes.some((index) => {
    if (Number(index.unique) !== 1 || Number(index.partial) === 1) return false;
    const columns = db.prepare(`PRAGMA index_info(${q(String(index.name))})`).all()
      .map((row) => String(row.name));
    return columns.length > 0 && columns.every((name) => table.key.includes(name));
  });
}

/**
 * What a row read from SQLite holds: the planned columns in plan order, then
 * the size SQLite gives their text (see {@link textFaults}), then the rowid
 * where the table has one (to page by, and to ask SQLite about a row again).
 */
function sourceColumns(source: Source, plan: TablePlan): string {
  const sizes = plan.textChecked.map((i) =>
    `coalesce(octet_length(${q(plan.columns[i].name)}), 0)`
  );
  return [
    ...plan.columns.map((c) => q(c.name)),
    sizes.join(" + ") || "0",
    ...(source.tables[plan.spec.name].pageable ? ["rowid"] : []),
  ].join(", ");
}

/** Columns whose values should be text, so node:sqlite's reading of them is checked. */
const isTextChecked = (column: PlannedColumn) =>
  column.kind !== "integer" && column.kind !== "boolean";

/**
 * node:sqlite cuts text at its first NUL and replaces bytes that are not
 * UTF-8 with U+FFFD, silently: JavaScript alone cannot tell such text from
 * what SQLite holds, and PostgreSQL would store the damage. So each row
 * carries the size SQLite gives its text columns (octet_length reads no
 * value), and JavaScript's text must come to the same size and hold no
 * U+FFFD. Where it does not, or where a value is not text (SQLite's text of a
 * number is not JavaScript's), SQLite is asked for that row's bytes (rare: a
 * U+FFFD may also be genuine). Returns the columns whose text is damaged, by
 * position, or null for the common row with none.
 */
function textFaults(
  source: Source,
  plan: TablePlan,
  row: unknown[],
): (ProblemKind | null)[] | null {
  const checked = plan.textChecked;
  if (checked.length === 0) return null;
  const size = Number(row[plan.columns.length]);
  let units = 0;
  let suspect = false;
  for (const i of checked) {
    const value = row[i];
    if (typeof value === "string") {
      units += value.length;
      if (value.indexOf("\uFFFD") >= 0) suspect = true;
    } else if (value instanceof Uint8Array) units += value.length;
    else if (value !== null) suspect = true;
  }
  if (!suspect) {
    // A unit of JavaScript text comes from at least one byte of SQLite's, so
    // equal sizes mean every character came whole, none cut off.
    if ((source.utf16 ? 2 * units : units) === size) return null;
    if (!source.utf16) {
      let bytes = 0;
      for (const i of checked) {
        const value = row[i];
        if (typeof value === "string") bytes += utf8Length(value);
        else if (value instanceof Uint8Array) bytes += value.length;
      }
      if (bytes === size) return null;
    }
  }
  return askSqlite(source, plan, row);
}

/** The damaged text columns of one row, from SQLite's bytes: see {@link textFaults}. */
function askSqlite(source: Source, plan: TablePlan, row: unknown[]): (ProblemKind | null)[] {
  const name = plan.spec.name;
  const pageable = source.tables[name].pageable;
  let statement = source.rawText.get(name);
  if (!statement) {
    const columns = plan.textChecked.map((i) => q(plan.columns[i].name)).flatMap((c) => [
      `iif(typeof(${c}) = 'text', instr(${c}, char(0)) > 0, 0)`,
      `CAST(${c} AS BLOB)`,
    ]);
    const where = pageable
      ? "rowid = ?"
      : plan.spec.key.map((k) => `${q(k)} = ?`).join(" AND ") + " LIMIT 1";
    statement = prepareArrays(
      source.db,
      `SELECT ${columns.join(", ")} FROM ${q(name)} WHERE ${where}`,
    );
    source.rawText.set(name, statement);
  }
  let found: unknown[] | undefined;
  try {
    [found] = statement.all(...(pageable ? [row.at(-1)] : plan.keyIndexes.map((i) => row[i])));
  } catch (error) {
    throw asSqliteError(error, source.path);
  }
  const encoder = new TextEncoder();
  const faults: (ProblemKind | null)[] = new Array(plan.columns.length).fill(null);
  plan.textChecked.forEach((i, k) => {
    const value = row[i];
    if (value instanceof Uint8Array) {
      if (value.includes(0)) faults[i] = "nul-character";
      return;
    }
    if (typeof value !== "string") return;
    if (!found) {
      // No rowid, and the key itself is damaged: judge by size alone.
      faults[i] = value.indexOf("\uFFFD") >= 0 ? "invalid-utf8" : "nul-character";
      return;
    }
    if (found[2 * k] === 1n) faults[i] = "nul-character";
    else if (!source.utf16 && !sameBytes(encoder.encode(value), found[2 * k + 1] as Uint8Array)) {
      faults[i] = "invalid-utf8";
    }
  });
  return faults;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Streams the planned columns of a table's rows as arrays, in plan order,
 * followed by the NUL bit masks.
 */
function* readRows(source: Source, plan: TablePlan, pageRows: number): Generator<unknown[]> {
  for (const page of readPages(source, plan, pageRows)) yield* page;
}

/**
 * The same rows a page at a time: a loop over a page costs less than a
 * generator's turn per row (a rerun's digests of 1.5 M snapshots: 7 %).
 */
function* readPages(source: Source, plan: TablePlan, pageRows: number): Generator<unknown[][]> {
  const name = plan.spec.name;
  const columns = sourceColumns(source, plan);
  let read = 0;
  if (source.tables[name].pageable) {
    // A page per all() call is ~2.5× faster than iterate(); small pages keep
    // the payloads young, so V8 frees them without growing the heap.
    // Integers as numbers; a page that holds one beyond 2^53 is read again
    // with BigInts, so no digit is lost.
    const text = `SELECT ${columns} FROM ${
      q(name)
    } WHERE rowid > ? ORDER BY rowid LIMIT ${pageRows}`;
    const page = prepareArrays(source.db, text, false);
    let exact: ArrayStatement | undefined;
    const fetch = (after: unknown) => {
      try {
        try {
          return page.all(after);
        } catch (error) {
          if (!(error instanceof RangeError)) throw error;
          exact ??= prepareArrays(source.db, text);
          return exact.all(after);
        }
      } catch (error) {
        throw asSqliteError(error, source.path);
      }
    };
    for (let rows = fetch(-1); rows.length > 0; rows = fetch(rows[rows.length - 1].at(-1))) {
      read += rows.length;
      yield rows;
    }
  } else {
    try {
      for (const row of prepareArrays(source.db, `SELECT ${columns} FROM ${q(name)}`).iterate()) {
        read++;
        yield [row];
      }
    } catch (error) {
      throw asSqliteError(error, source.path);
    }
  }
  if (read !== source.tables[name].rows) {
    throw new MigrationError(
      "data",
      `SQLite returned ${read} of ${source.tables[name].rows} rows of ${name}`,
      "run PRAGMA integrity_check on the SQLite file",
    );
  }
}

/**
 * Keys that occur more than once, as the target compares them: a char(n)
 * key ignores trailing spaces, a citext one case (ASCII case here; PostgreSQL
 * refuses the rest when it writes). Asked of SQLite only where no UNIQUE
 * index of its own rules them out, which it cannot for such keys.
 */
function duplicateSourceKeys(
  source: Source,
  plan: TablePlan,
): { key: string; count: number; folded: boolean }[] {
  const table = plan.spec;
  const asTarget = table.key.map((k) => {
    const base = plan.columns.find((c) => c.name === k)?.target.baseName;
    return base === "bpchar" ? `rtrim(${q(k)}, ' ')` : base === "citext" ? `lower(${q(k)})` : q(k);
  });
  const folded = asTarget.some((expression, i) => expression !== q(table.key[i]));
  if (source.tables[table.name].uniqueKey && !folded) return [];
  const keys = asTarget.join(", ");
  const statement = prepareArrays(
    source.db,
    `SELECT ${keys}, count(*) FROM ${q(table.name)} GROUP BY ${keys} HAVING count(*) > 1`,
  );
  try {
    return statement.all().map((row) => ({
      key: row.slice(0, -1).map(String).join("/"),
      count: Number(row.at(-1)),
      folded,
    }));
  } catch (error) {
    throw asSqliteError(error, source.path);
  }
}

// ---------------------------------------------------------------------------
// 4. Validate: pure functions, row → problems, against the target's types
// ---------------------------------------------------------------------------

/** A value ready for COPY, already PostgreSQL-safe. */
type CleanValue = string | number | bigint | boolean | null;

/** Receives every problem found, for `--reject-file`. */
type ProblemSink = (problem: Problem, action: "refused" | "changed") => void;

/** Collects problems, keeping the first examples of each kind and the totals. */
class ProblemLog {
  #groups = new Map<ProblemKind, ProblemGroup>();

  constructor(readonly sink?: (problem: Problem) => void) {}

  add(problem: Problem): void {
    let group = this.#groups.get(problem.kind);
    if (!group) {
      group = { kind: problem.kind, ...PROBLEM_KINDS[problem.kind], total: 0, examples: [] };
      this.#groups.set(problem.kind, group);
    }
    group.total++;
    if (group.examples.length < EXAMPLES_PER_KIND) group.examples.push(problem);
    this.sink?.(problem);
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

/** What validation needs to know about a PostgreSQL column, read from its catalog. */
interface TargetColumn {
  name: string;
  /** The type as PostgreSQL prints it: `character varying(64)`. */
  type: string;
  /** The base type (after domains) with its modifier: what staging uses. */
  stageType: string;
  /** `pg_type.typname` of the base type, or `enum`. */
  baseName: string;
  /** varchar(n), char(n): n. */
  length: number | null;
  /** timestamp(p), timestamptz(p): p, the fractional-second digits it keeps (null: all six). */
  precision: number | null;
  /** The labels of an enum type. */
  labels: string[] | null;
  notNull: boolean;
  /** PostgreSQL fills it when no value is given: a default, identity or generated column. */
  filled: boolean;
  generated: boolean;
  identityAlways: boolean;
}

/** Checks one value and returns it in the form PostgreSQL will store, or why it cannot go there. */
type Validator = (value: unknown) => CleanValue | Invalid;

/**
 * The validator for one target column, built once from its type rule: every
 * value of every row goes through it, so it allocates nothing.
 */
function validatorFor(column: TargetColumn, rule: TypeRule): Validator {
  const check = valueCheck(column, rule);
  const nullable = !column.notNull;
  // A verdict depends on the value alone: the last one is kept, since rows
  // in a row repeat values (a snapshot's date and time range, mostly).
  let lastValue: unknown = undefined;
  let lastVerdict: CleanValue | Invalid = null;
  return (value) => {
    if (value === null || (rule.kind === "json" && value === "")) {
      // The seed stores empty raw_json as SQL NULL; keep that.
      return nullable ? null : INVALID["null-value"];
    }
    if (value === lastValue) return lastVerdict;
    lastVerdict = check(value);
    lastValue = typeof value === "string" || typeof value === "number" ? value : undefined;
    return lastVerdict;
  };
}

function valueCheck(
  column: TargetColumn,
  rule: TypeRule,
): (value: unknown) => CleanValue | Invalid {
  switch (rule.kind) {
    case "integer": {
      const [min, max] = rule.range!;
      const [low, high] = [Number(min), Number(max)];
      return (value) =>
        // A safe integer compares exactly with the bounds as doubles.
        typeof value === "number" && Number.isSafeInteger(value)
          ? value >= low && value <= high ? value : INVALID["out-of-range"]
          : checkInteger(value, min, max);
    }
    case "text": {
      const labels = column.labels ? new Set(column.labels) : null;
      const length = column.length;
      return (value) => {
        if (typeof value !== "string") return INVALID["not-text"];
        // PostgreSQL would cut trailing spaces beyond the limit without a word.
        if (length !== null && value.length > length && codePoints(value) > length) {
          return INVALID["too-long"];
        }
        if (labels && !labels.has(value)) return INVALID["not-allowed"];
        return value;
      };
    }
    case "date":
      return (value) =>
        typeof value !== "string"
          ? INVALID["not-text"]
          : isCalendarDate(value)
          ? value
          : INVALID["invalid-date"];
    case "timestamp": {
      // PostgreSQL would round the digits beyond the column's precision
      // without a word, as it would cut a too-long char(n)'s spaces.
      const digits = column.precision;
      return (value) =>
        typeof value !== "string"
          ? INVALID["not-text"]
          : !isTimestamp(value)
          ? INVALID["invalid-timestamp"]
          : digits !== null && fractionDigits(value) > digits
          ? INVALID["too-precise"]
          : value;
    }
    case "boolean":
      return checkBoolean;
    case "json": {
      // A jsonb payload is parsed once, here, for validation and its digest.
      const accepts = column.baseName === "jsonb" ? isJsonb : isJsonbText;
      return (value) =>
        typeof value !== "string"
          ? INVALID["not-text"]
          : accepts(value)
          ? value
          : INVALID["invalid-json"];
    }
  }
}

/** Integers beyond 2^53 arrive as BigInt; a REAL such as 3.0 is the integer 3. */
function checkInteger(value: unknown, min: bigint, max: bigint): bigint | Invalid {
  let integer: bigint;
  if (typeof value === "bigint") integer = value;
  else if (typeof value === "number" && Number.isInteger(value)) integer = BigInt(value);
  else return INVALID["not-integer"];
  return integer >= min && integer <= max ? integer : INVALID["out-of-range"];
}

function checkBoolean(value: unknown): boolean | Invalid {
  if (value === 0n || value === 0) return false;
  if (value === 1n || value === 1) return true;
  if (typeof value === "string") {
    const word = value.toLowerCase();
    if (word === "true") return true;
    if (word === "false") return false;
  }
  return INVALID["invalid-boolean"];
}

/** Characters as PostgreSQL counts them: code points, not UTF-16 units. */
function codePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdbff) count++;
  }
  return count;
}

/** Why a value was refused, in words, for the report. */
function describeInvalid(kind: ProblemKind, column: TargetColumn, value: unknown): string {
  const shown = preview(value);
  if (kind === "too-long") {
    return `${shown} (${
      codePoints(value as string)
    } characters; ${column.type} holds ${column.length})`;
  }
  if (kind === "out-of-range") return `${shown} (does not fit ${column.type})`;
  if (kind === "too-precise") {
    const digits = column.precision!;
    return `${shown} (${column.type} keeps ${digits} fractional digit${digits === 1 ? "" : "s"})`;
  }
  if (kind === "not-allowed") {
    return `${shown} (${column.type} allows ${column.labels!.join(", ")})`;
  }
  return shown;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * `YYYY-MM-DD` naming a day of the proleptic Gregorian calendar, read digit by
 * digit: snapshots hold one date a row, and a regular expression and a Date
 * for each cost a quarter of a microsecond.
 */
function isCalendarDate(text: string): boolean {
  if (text.length !== 10 || text.charCodeAt(4) !== 0x2d || text.charCodeAt(7) !== 0x2d) {
    return false;
  }
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]);
}

/** The decimal number of `count` ASCII digits from `at`, or -1 if one is not a digit. */
function digitsAt(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** ISO 8601 as SQLite writes it (CURRENT_TIMESTAMP, datetime()), with an optional offset. */
/** Significant fractional-second digits of a valid timestamp: `00.50` has one. */
function fractionDigits(text: string): number {
  return (ISO_TIMESTAMP.exec(text)![5] ?? "").replace(/0+$/, "").length;
}

function isTimestamp(text: string): boolean {
  const match = ISO_TIMESTAMP.exec(text);
  if (!match || !isCalendarDate(match[1])) return false;
  const [hour, minute, second] = match.slice(2, 5).map((part) => Number(part ?? 0));
  return hour < 24 && minute < 60 && second < 60;
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

/** The row's key as messages show it: `track_id/snapshot_date/time_range`. */
function rowKey(plan: TablePlan, row: unknown[]): string {
  return plan.keyIndexes.map((i) => {
    const value = row[i];
    return typeof value === "string" ? value : preview(value);
  }).join("/");
}

/** Validates one source row; returns the clean row, or null after logging its problems. */
function validateRow(
  source: Source,
  plan: TablePlan,
  row: unknown[],
  policy: { invalidJson: InvalidJsonPolicy },
  problems: ProblemLog,
  policies: ProblemLog,
): CleanValue[] | null {
  const columns = plan.columns;
  const clean: CleanValue[] = new Array(columns.length);
  const faults = textFaults(source, plan, row);
  let ok = true;
  for (let i = 0; i < columns.length; i++) {
    const fault = faults?.[i];
    const result = fault ? INVALID[fault] : columns[i].validate(row[i]);
    if (!(result instanceof Invalid)) {
      clean[i] = result;
      continue;
    }
    const problem: Problem = {
      kind: result.kind,
      table: plan.spec.name,
      key: rowKey(plan, row),
      column: columns[i].name,
      value: describeInvalid(result.kind, columns[i].target, row[i]),
    };
    if (
      result.kind === "invalid-json" && policy.invalidJson === "null" && !columns[i].target.notNull
    ) {
      clean[i] = null;
      policies.add(problem);
    } else {
      ok = false;
      problems.add(problem);
    }
  }
  return ok ? clean : null;
}

// ---------------------------------------------------------------------------
// 5. Load: read the target's catalog, plan, stage, check set-based, write
// ---------------------------------------------------------------------------

type Sql = postgres.Sql;
type Tx = postgres.TransactionSql;

/** A constraint of the target table, as pg_constraint has it. */
interface TargetConstraint {
  name: string;
  /** `p` primary key, `u` unique, `f` foreign key, `c` check, `x` exclusion. */
  type: string;
  definition: string;
  /** For CHECK: the expression alone. */
  expression: string | null;
  columns: string[];
  /** Another table's foreign key depends on it (its index). */
  referenced: boolean;
  comment: string | null;
}

/** An index of the target table. */
interface TargetIndex {
  name: string;
  definition: string;
  /** Backs a constraint (primary key, unique, exclusion): it comes and goes with it. */
  constraint: boolean;
  unique: boolean;
  /** Another table's foreign key depends on it (a unique index, not a constraint). */
  referenced: boolean;
  /** Plain columns only, or null for expression and partial indexes. */
  columns: string[] | null;
  tablespace: string | null;
  comment: string | null;
  /** Marked for CLUSTER, or the table's replica identity: set again after a rebuild. */
  clustered: boolean;
  replicaIdentity: boolean;
}

/** One target table as PostgreSQL's catalog describes it. */
interface TargetTable {
  oid: string;
  /** `"schema"`, quoted for any name. */
  schema: string;
  /** `"schema"."table"`, quoted for any schema name. */
  qualified: string;
  columns: TargetColumn[];
  constraints: TargetConstraint[];
  indexes: TargetIndex[];
  triggers: string[];
}

/** A column both sides have: read from SQLite, validated for its target type, written, verified. */
interface PlannedColumn {
  name: string;
  kind: Kind;
  target: TargetColumn;
  validate: Validator;
}

/** What the run does with one table, derived from its declaration, SQLite and the catalog. */
interface TablePlan {
  spec: TableSpec;
  target: TargetTable;
  /** In the target's column order. */
  columns: PlannedColumn[];
  /** Positions of the key columns in `columns`. */
  keyIndexes: number[];
  /** The order of the columns in a row's digest: see "Row digests". */
  digestOrder: number[];
  /** Positions of the columns whose text {@link textFaults} checks. */
  textChecked: number[];
  touch: string | null;
  filledByPostgres: string[];
  ignored: string[];
  /** The staging table: same column types as the target. */
  staging: string;
  /**
   * Every clean source row's key and digest: the staging table itself, or on
   * a rerun of a table with payloads, a table of keys and digests only, and
   * staging then holds just the rows whose digests differ from the target's.
   */
  keys: string;
  /**
   * After the comparison of a table that had rows: the staged rows the target
   * lacks (`migrate_missing`) or holds otherwise, so the writes touch only them.
   */
  changes?: string;
}

const TARGET_TABLE = `
  SELECT c.oid::text AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

const TARGET_COLUMNS = `
  SELECT a.attname AS name,
         format_type(a.atttypid, a.atttypmod) AS type,
         format_type(b.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)
           AS stage_type,
         CASE WHEN b.typtype = 'e' THEN 'enum' ELSE b.typname::text END AS base_name,
         CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
         a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS not_null,
         a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' AS filled,
         a.attgenerated <> '' AS generated,
         a.attidentity = 'a' AS identity_always,
         CASE WHEN b.typtype = 'e' THEN ARRAY(
           SELECT enumlabel::text FROM pg_enum WHERE enumtypid = b.oid ORDER BY enumsortorder)
         END AS labels
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
  ORDER BY a.attnum`;

const TARGET_CONSTRAINTS = `
  SELECT c.conname AS name, c.contype::text AS type, pg_get_constraintdef(c.oid) AS definition,
         CASE WHEN c.contype = 'c' THEN pg_get_expr(c.conbin, c.conrelid) END AS expression,
         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, i)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
               ORDER BY k.i) AS columns,
         EXISTS (SELECT FROM pg_constraint r
                 WHERE r.contype = 'f' AND r.confrelid = c.conrelid AND r.conindid = c.conindid
                   AND c.contype IN ('p', 'u')) AS referenced,
         obj_description(c.oid, 'pg_constraint') AS comment
  FROM pg_constraint c WHERE c.conrelid = $1::oid
  ORDER BY c.contype = 'f', c.conname`;

const TARGET_INDEXES = `
  SELECT ci.relname AS name, pg_get_indexdef(i.indexrelid) AS definition,
         EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid
                 AND c.conrelid = i.indrelid) AS constraint,
         i.indisunique AS unique,
         EXISTS (SELECT FROM pg_constraint r WHERE r.contype = 'f' AND r.conindid = i.indexrelid)
           AS referenced,
         CASE WHEN i.indpred IS NULL AND i.indexprs IS NULL THEN ARRAY(
           SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE k.n <= i.indnkeyatts ORDER BY k.n) END AS columns,
         (SELECT spcname FROM pg_tablespace WHERE oid = ci.reltablespace) AS tablespace,
         obj_description(i.indexrelid, 'pg_class') AS comment,
         i.indisclustered AS clustered, i.indisreplident AS "replicaIdentity"
  FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid
  WHERE i.indrelid = $1::oid ORDER BY ci.relname`;

// Whatever can write rows no statement of ours names: triggers, rules (also
// those of a partitioned table's partitions, where our rows land; a trigger
// defined on the parent has a clone of the same name on each), and foreign
// keys of other tables or columns whose ON DELETE writes referencing rows
// when a rerun prunes (not the tables' own reference, $2 on columns $3: the
// orphan checks leave it nothing to delete).
const TARGET_TRIGGERS = `
  WITH tree AS (SELECT $1::oid AS relid UNION SELECT relid FROM pg_partition_tree($1::oid)),
       own AS (SELECT to_regclass($2)::oid AS relid
               UNION SELECT relid FROM pg_partition_tree(to_regclass($2)))
  SELECT tgname AS name FROM pg_trigger WHERE tgrelid IN (SELECT relid FROM tree) AND NOT tgisinternal
  UNION
  SELECT 'rule ' || rulename FROM pg_rewrite
  WHERE ev_class IN (SELECT relid FROM tree) AND rulename <> '_RETURN'
  UNION
  SELECT 'foreign key ' || c.conname || ' (ON DELETE '
         || CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' ELSE 'SET DEFAULT' END
         || ')'
  FROM pg_constraint c
  WHERE c.contype = 'f' AND c.confrelid IN (SELECT relid FROM tree) AND c.confdeltype NOT IN ('a', 'r')
    AND NOT coalesce(c.conrelid IN (SELECT relid FROM own) AND ARRAY(
      SELECT a.attname::text FROM pg_attribute a
      WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
      ORDER BY a.attname::text COLLATE "C") = $3::text[], false)
  ORDER BY 1`;

/** The target table's shape from PostgreSQL's catalog, or null when there is no such table. */
async function readTarget(tx: Tx, schema: string, name: string): Promise<TargetTable | null> {
  const [table] = await tx.unsafe(TARGET_TABLE, [schema, name]);
  if (!table) return null;
  const oid = table.oid as string;
  const columns = (await tx.unsafe(TARGET_COLUMNS, [oid])).map((row): TargetColumn => ({
    name: row.name,
    type: row.type,
    stageType: row.stage_type,
    baseName: row.base_name,
    // varchar(n) and char(n) store n + 4 in the type modifier.
    length: ["varchar", "bpchar"].includes(row.base_name) && row.typmod >= 4
      ? row.typmod - 4
      : null,
    precision: ["timestamp", "timestamptz"].includes(row.base_name) && row.typmod >= 0
      ? row.typmod
      : null,
    labels: row.labels,
    notNull: row.not_null,
    filled: row.filled,
    generated: row.generated,
    identityAlways: row.identity_always,
  }));
  const constraints = (await tx.unsafe(TARGET_CONSTRAINTS, [oid])) as unknown as TargetConstraint[];
  const indexes = (await tx.unsafe(TARGET_INDEXES, [oid])) as unknown as TargetIndex[];
  const own = TABLES.find((t) => t.references?.table === name);
  const triggers = (await tx.unsafe(TARGET_TRIGGERS, [
    oid,
    own ? `${q(schema)}.${q(own.name)}` : null,
    [...own?.references?.columns ?? []].sort(),
  ])).map((row) => row.name as string);
  return {
    oid,
    schema: q(schema),
    qualified: `${q(schema)}.${q(name)}`,
    columns,
    constraints: [...constraints],
    indexes: [...indexes],
    triggers,
  };
}

const ruleFor = (column: TargetColumn) => TYPE_RULES.find((r) => r.types.includes(column.baseName));

/** `tracks.id` or `id`: the `--ignore-columns` entries that name this column. */
const isIgnored = (options: Options, table: TableName, column: string) =>
  options.ignoreColumns.some((entry) => entry === column || entry === `${table}.${column}`);

/**
 * Matches SQLite's columns with the target's and checks every rule that
 * needs no data: the types, the key, the columns PostgreSQL must fill.
 * Returns the plan, or the problems, each with its fix.
 */
function planTable(
  spec: TableSpec,
  source: SourceTable,
  target: TargetTable,
  options: Options,
): { plan?: TablePlan; problems: string[] } {
  const problems: string[] = [];
  const where = `${options.schema}.${spec.name}`;
  const byName = new Map(target.columns.map((c) => [c.name, c]));
  const ignored: string[] = [];
  const supplied = new Set<string>();
  for (const name of source.columns) {
    const column = byName.get(name);
    if (column && !column.generated) {
      supplied.add(name);
    } else if (isIgnored(options, spec.name, name)) {
      ignored.push(name);
    } else {
      problems.push(
        `SQLite column ${spec.name}.${name} has no ${
          column ? "writable column (it is generated)" : "column"
        } in PostgreSQL ${where}: its values would be lost. Add the column to the target, or pass --ignore-columns ${spec.name}.${name} to migrate without it`,
      );
    }
  }
  const columns: PlannedColumn[] = [];
  const filledByPostgres: string[] = [];
  for (const column of target.columns) {
    if (!supplied.has(column.name)) {
      if (column.notNull && !column.filled) {
        problems.push(
          `PostgreSQL column ${where}.${column.name} is NOT NULL without a default, and SQLite has no such column: give it a default (ALTER TABLE … ALTER COLUMN ${column.name} SET DEFAULT …) or allow NULL`,
        );
      }
      filledByPostgres.push(column.name);
      continue;
    }
    const expected = spec.columns.find((c) => c.name === column.name)?.kind;
    const rule = ruleFor(column);
    if (!rule || (expected && rule.kind !== expected)) {
      const accepts = KIND_ACCEPTS[expected ?? "text"];
      problems.push(
        `PostgreSQL column ${where}.${column.name} is ${column.type}, which migrate.ts cannot fill ${
          expected ? `with ${spec.name}.${column.name}` : "from SQLite"
        }: use ${expected ? accepts : Object.values(KIND_ACCEPTS).join("; ")}${
          expected ? "" : `, or pass --ignore-columns ${spec.name}.${column.name}`
        }`,
      );
      continue;
    }
    columns.push({
      name: column.name,
      kind: rule.kind,
      target: column,
      validate: validatorFor(column, rule),
    });
  }
  const missingKey = spec.key.filter((k) => !supplied.has(k));
  if (missingKey.length > 0) {
    problems.push(
      `PostgreSQL table ${where} lacks the key column ${missingKey.join(", ")}`,
    );
  } else if (!hasKeyConstraint(spec, target)) {
    problems.push(
      `PostgreSQL table ${where} has no PRIMARY KEY or UNIQUE constraint on (${
        spec.key.join(", ")
      }), which reruns need to match rows: ALTER TABLE ${where} ADD PRIMARY KEY (${
        spec.key.join(", ")
      })`,
    );
  }
  if (problems.length > 0) return { problems };
  const touch = spec.touch && !supplied.has(spec.touch) &&
      ["timestamp", "date"].includes(
        ruleFor(byName.get(spec.touch) ?? ({} as TargetColumn))?.kind ?? "",
      )
    ? spec.touch
    : null;
  const keyIndexes = spec.key.map((k) => columns.findIndex((c) => c.name === k));
  return {
    problems,
    plan: {
      spec,
      target,
      columns,
      keyIndexes,
      digestOrder: digestOrder(columns, keyIndexes),
      textChecked: columns.flatMap((c, i) => isTextChecked(c) ? [i] : []),
      touch,
      filledByPostgres,
      ignored,
      staging: `pg_temp.${q(`migrate_stage_${spec.name}`)}`,
      keys: `pg_temp.${q(`migrate_stage_${spec.name}`)}`,
    },
  };
}

function hasKeyConstraint(spec: TableSpec, target: TargetTable): boolean {
  const sameColumns = (columns: string[] | null) =>
    columns !== null && columns.length === spec.key.length &&
    columns.every((c) => spec.key.includes(c));
  return target.indexes.some((index) => index.unique && sameColumns(index.columns));
}

/** Plans every table, or stops with every setup problem before any data is read. */
async function planTables(tx: Tx, source: Source, options: Options): Promise<TablePlan[]> {
  const plans: TablePlan[] = [];
  const problems: string[] = [];
  for (const spec of TABLES) {
    const target = await readTarget(tx, options.schema, spec.name);
    if (!target) {
      problems.push(
        `PostgreSQL table ${options.schema}.${spec.name} does not exist: create it (see README), or pass --create-schema to create the tutorial's tables`,
      );
      continue;
    }
    const planned = planTable(spec, source.tables[spec.name], target, options);
    problems.push(...planned.problems);
    if (planned.plan) plans.push(planned.plan);
  }
  for (const plan of plans) {
    const ref = plan.spec.references;
    const missing = ref?.columns.filter((c) => !plan.columns.some((p) => p.name === c)) ?? [];
    if (missing.length > 0) {
      problems.push(
        `PostgreSQL table ${options.schema}.${plan.spec.name} lacks ${
          missing.join(", ")
        }, which refers to ${ref!.table}`,
      );
    }
  }
  // A name that matches nothing is a typo that would hide the column it meant.
  for (const entry of options.ignoreColumns) {
    const named = TABLES.some((t) =>
      source.tables[t.name].columns.some((c) => entry === c || entry === `${t.name}.${c}`)
    );
    if (!named) {
      problems.push(
        `--ignore-columns names ${entry}, which no SQLite table has: write table.column or column, as SQLite names it`,
      );
    }
  }
  if (problems.length > 0) {
    throw new MigrationError(
      "config",
      `the PostgreSQL target does not fit the SQLite data; nothing was read or written:\n  ${
        problems.join("\n  ")
      }`,
      "each line above says what to change",
    );
  }
  return plans;
}

/** One line per table saying what was read and how it maps. */
function describePlan(plan: TablePlan, source: Source): string {
  const parts = [
    `${plan.spec.name}: ${source.tables[plan.spec.name].rows} rows; migrating ${
      plan.columns.map((c) => `${c.name} → ${c.target.type}`).join(", ")
    }`,
  ];
  if (plan.filledByPostgres.length > 0) {
    parts.push(`PostgreSQL fills ${plan.filledByPostgres.join(", ")}`);
  }
  if (plan.ignored.length > 0) {
    parts.push(`not migrated (--ignore-columns): ${plan.ignored.join(", ")}`);
  }
  return parts.join("; ");
}

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
  if (typeof value !== "string") return String(value);
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : value;
}

/** One row as a line of COPY text. */
function copyLine(row: CleanValue[]): string {
  let line = copyField(row[0]);
  for (let i = 1; i < row.length; i++) line += "\t" + copyField(row[i]);
  return line + "\n";
}

const columnList = (plan: TablePlan, prefix = "") =>
  plan.columns.map((c) => prefix + q(c.name)).join(", ");
/** The key as one text (`track_id/snapshot_date/time_range`), as messages show it. */
const keyText = (plan: TablePlan, alias: string) =>
  plan.spec.key.map((k) => `${alias}.${q(k)}::text`).join(" || '/' || ");
const keyMatch = (plan: TablePlan, a: string, b: string) =>
  plan.spec.key.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(" AND ");
const keyOrder = (plan: TablePlan, alias: string) => `${keyText(plan, alias)} COLLATE "C"`;

/**
 * Staging: a temporary table per source table, in the target's own column
 * types, plus each row's digest as JavaScript computed it from SQLite.
 */
const STAGING_STATISTICS = 10;
const DIGEST = "migrate_digest";

async function createStaging(tx: Tx, plan: TablePlan, firstRun: boolean): Promise<void> {
  const columns = plan.columns.map((c) => `${q(c.name)} ${c.target.stageType}`);
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${plan.staging} (${
      columns.join(", ")
    }, ${DIGEST} bigint) ON COMMIT DROP`,
  );
  await chooseStagingStorage(tx, plan, firstRun);
}

/**
 * Payloads are compressed once, in staging, with lz4 where the server has it:
 * PostgreSQL copies a compressed value into the target as it is, and lz4 is
 * much cheaper than the default pglz both ways (the large data set's tracks
 * stage in 4.5 s instead of 6.8 s, and read back twice as fast in the
 * comparison). Without lz4, payloads stay compressed for a first run, where
 * they are copied, and uncompressed when the target already has rows, where
 * they are mostly compared (a rerun of the large data set: 12.3 s → 10.4 s).
 */
async function chooseStagingStorage(tx: Tx, plan: TablePlan, firstRun: boolean): Promise<void> {
  const json = plan.columns.filter((c) => c.kind === "json");
  if (json.length === 0) return;
  const [{ lz4 }] = await tx.unsafe(`SELECT EXISTS (SELECT FROM pg_settings
    WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) AS lz4`);
  const storage = lz4 ? "SET COMPRESSION lz4" : firstRun ? null : "SET STORAGE EXTERNAL";
  if (storage === null) return;
  for (const column of json) {
    await tx.unsafe(`ALTER TABLE ${plan.staging} ALTER COLUMN ${q(column.name)} ${storage}`);
  }
}

/** Writes lines to a COPY … FROM STDIN stream in chunks, honouring backpressure. */
async function copyInto(
  tx: Tx,
  target: string,
  lines: Iterable<string | Uint8Array>,
  onFlush: () => void,
  meanwhile?: Prefetch,
): Promise<void> {
  const stream = await tx.unsafe(`COPY ${target} FROM STDIN`).writable();
  const finished = new Promise<void>((resolve, reject) => {
    stream.on("finish", resolve);
    stream.on("error", reject);
  });
  // Awaited below; until then, a failure (the connection lost mid-COPY) must
  // not count as an unhandled rejection, which would end the process.
  finished.catch(() => {});
  // postgres.js's pipeline() misbehaves under Deno; write/drain/end does not.
  // A stream that fails never drains: stop waiting when it finishes or fails.
  // Waiting for each chunk to reach the socket lets Deno send it now, so
  // PostgreSQL parses one chunk while JavaScript encodes the next; without
  // the wait, the chunks leave only when the buffer is full, and the two
  // sides take turns instead of working at once.
  const send = async (data: string | Uint8Array) => {
    const written = Promise.race([new Promise((resolve) => stream.write(data, resolve)), finished]);
    await (meanwhile ? meanwhile.during(written) : written);
    onFlush();
  };
  let chunk = "";
  try {
    for (const line of lines) {
      if (typeof line !== "string") {
        // Text made ahead, already a chunk of bytes.
        if (chunk !== "") await send(chunk);
        chunk = "";
        await send(line);
        continue;
      }
      chunk += line;
      if (chunk.length >= COPY_FLUSH_CHARS) {
        await send(chunk);
        chunk = "";
      }
    }
    if (chunk !== "") await send(chunk);
  } catch (error) {
    // destroy() sends CopyFail, so the connection can roll back cleanly.
    stream.destroy(error as Error);
    await finished.catch(() => {});
    throw error;
  }
  stream.end();
  // When PostgreSQL refuses the COPY at its end (a foreign key or a trigger
  // checks rows then), postgres.js never settles the stream and drops the
  // error (porsager/postgres#1173). A query queued behind the COPY settles
  // either way, and fails when the COPY did. It must follow CopyDone, which
  // end() sends on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  const probe = tx.unsafe("SELECT 1");
  probe.catch(() => {});
  try {
    await Promise.race([finished, probe]);
    await finished;
  } catch (error) {
    if ((error as { code?: string }).code !== IN_FAILED_TRANSACTION) throw error;
    throw new CopyRefused(target);
  }
}

const IN_FAILED_TRANSACTION = "25P02";

/** PostgreSQL refused a COPY at its end, for a reason postgres.js does not pass on. */
class CopyRefused extends Error {
  constructor(readonly target: string) {
    super(`PostgreSQL refused the rows copied into ${target} when the COPY ended`);
  }
}

/** What validation found, and the keys it needs later. */
interface ValidationLog {
  problems: ProblemLog;
  policies: ProblemLog;
  /** Keys of rows refused by validation, per table: rows referring to them are not orphans. */
  refused: Map<TableName, string[]>;
}

/**
 * Reads, validates and encodes one table as COPY lines, each made by
 * `encode` from the clean row and its digest; rows with problems are logged
 * and never sent. Returns the number of rows sent.
 */
function* encodedRows(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  progress: (done: number) => void,
  encode: (clean: CleanValue[], digest: RowDigest, row: unknown[]) => string,
): Generator<string, number> {
  const refused = log.refused.get(plan.spec.name)!;
  const singleKey = plan.keyIndexes.length === 1 ? plan.keyIndexes[0] : -1;
  const digest = new RowDigest();
  let read = 0;
  let sent = 0;
  for (const row of readRows(source, plan, options.batchSize)) {
    if (++read % 1024 === 0) progress(read);
    const clean = validateRow(source, plan, row, options, log.problems, log.policies);
    if (!clean) {
      const key = row[singleKey];
      if (typeof key === "string") refused.push(key);
      continue;
    }
    sent++;
    yield encode(clean, rowDigest(digest, plan, clean), row);
  }
  progress(read);
  return sent;
}

/** Staging lines: the row, or only its key, followed by its digest. */
function stagingLines(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  progress: (done: number) => void,
  keysOnly: boolean,
): Generator<string, number> {
  return encodedRows(
    source,
    plan,
    options,
    log,
    progress,
    keysOnly
      ? (clean, digest) => copyLine([...plan.keyIndexes.map((i) => clean[i]), digest.value])
      : (clean, digest) => copyLine([...clean, digest.value]),
  );
}

/** The digest of one clean row: see "Row digests". */
function rowDigest(digest: RowDigest, plan: TablePlan, clean: CleanValue[]): RowDigest {
  const order = plan.digestOrder;
  const keyFields = plan.keyIndexes.length;
  for (let place = 0; place < order.length; place++) {
    const i = order[place];
    addCanonical(digest, plan.columns[i], clean[i]);
    digest.endField(place < keyFields);
  }
  return digest.finish();
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

/**
 * Reads every SQLite table in load order, validates every row against the
 * target's types, and COPYs the clean rows into staging. Then checks what
 * needs the whole set: orphans, the target's CHECK and UNIQUE rules. Throws
 * with every problem found, before anything reaches the target tables.
 */
async function stageSource(
  tx: Tx,
  source: Source,
  plans: TablePlan[],
  options: Options,
  sink: ProblemSink | undefined,
): Promise<
  { staged: Map<TablePlan, number>; skipped: Map<TablePlan, number>; policies: ProblemLog }
> {
  const log: ValidationLog = {
    problems: new ProblemLog(sink && ((p) => sink(p, "refused"))),
    policies: new ProblemLog(sink && ((p) => sink(p, "changed"))),
    refused: new Map(plans.map((p) => [p.spec.name, []])),
  };
  for (const plan of plans) {
    for (const duplicate of duplicateSourceKeys(source, plan)) {
      log.problems.add({
        kind: "duplicate-key",
        table: plan.spec.name,
        key: duplicate.key,
        value: `${duplicate.count} rows${
          duplicate.folded
            ? ", equal as PostgreSQL compares the key (char(n) ignores trailing spaces, citext case)"
            : ""
        }`,
      });
    }
  }
  const staged = new Map<TablePlan, number>();
  for (const plan of plans) {
    const filled = await hasRows(tx, plan);
    await createStaging(tx, plan, !filled);
    // A rerun of a table with payloads ships keys and digests first, and
    // whole rows only where the target's digest differs: PostgreSQL then
    // parses only the payloads that changed.
    const keysFirst = filled && !plan.spec.references &&
      plan.columns.some((c) => c.kind === "json");
    if (keysFirst) await createKeys(tx, plan);
    const total = source.tables[plan.spec.name].rows;
    let done = 0;
    let sent = 0;
    const progress = () => options.onProgress?.({ table: plan.spec.name, done, total });
    const lines = stagingLines(source, plan, options, log, (read) => (done = read), keysFirst);
    const counted = (function* () {
      sent = yield* lines;
    })();
    const into = keysFirst
      ? `${plan.keys} (${plan.spec.key.map(q).join(", ")}, ${DIGEST})`
      : `${plan.staging} (${columnList(plan)}, ${DIGEST})`;
    await copyInto(tx, into, counted, progress);
    done = total;
    progress();
    if (keysFirst) await stageChangedRows(tx, source, plan, options);
    staged.set(plan, sent);
  }
  const skipped = new Map<TablePlan, number>();
  for (const plan of plans) {
    skipped.set(plan, await checkOrphans(tx, plans, plan, options, log));
    await checkConstraints(tx, plan, options, log.problems);
  }
  if (log.problems.total > 0) {
    throw new MigrationError(
      "data",
      `${log.problems.total} problem(s) in the SQLite data; nothing was written`,
      "fix the rows named above in SQLite and rerun",
      log.problems.groups,
    );
  }
  for (const plan of plans) {
    staged.set(plan, staged.get(plan)! - skipped.get(plan)!);
    await analyzeStaging(tx, plan);
  }
  return { staged, skipped, policies: log.policies };
}

/**
 * Statistics for the joins on the key; the payload columns need none. A
 * sample of 3,000 rows (statistics target 10) plans these joins as well as the
 * default 30,000 and takes a tenth of the time: 170 ms → 20 ms for medium's
 * tracks, whose wide rows make every sampled page a read.
 */
async function analyzeStaging(
  tx: Tx,
  plan: TablePlan,
  tables = [plan.staging, plan.keys],
): Promise<void> {
  for (const statement of analyzeSql(plan, tables)) await tx.unsafe(statement);
}

function analyzeSql(plan: TablePlan, tables: string[]): string[] {
  const columns = plan.spec.key.map(q);
  return [...new Set(tables)].flatMap((table) => [
    `ALTER TABLE ${table} ${
      columns.map((c) => `ALTER COLUMN ${c} SET STATISTICS ${STAGING_STATISTICS}`).join(", ")
    }`,
    `ANALYZE ${table} (${columns.join(", ")})`,
  ]);
}

/** The keys-and-digests table of a rerun that ships keys first. */
async function createKeys(tx: Tx, plan: TablePlan): Promise<void> {
  plan.keys = `pg_temp.${q(`migrate_keys_${plan.spec.name}`)}`;
  const columns = plan.keyIndexes.map((i) => plan.columns[i])
    .map((c) => `${q(c.name)} ${c.target.stageType}`);
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${plan.keys} (${columns.join(", ")}, ${DIGEST} bigint) ON COMMIT DROP`,
  );
}

/**
 * Reads again, by key, the source rows whose digest the target lacks or has
 * otherwise, and stages them whole: what a rerun may write, and what it
 * compares by value (a digest can differ for rows equal as JSONB).
 */
async function stageChangedRows(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
): Promise<void> {
  const k = q(plan.spec.key[0]);
  const changed = await tx.unsafe(
    `SELECT ${plan.spec.key.map((key, i) => `k.${q(key)}::text AS k${i}`).join(", ")}
     FROM ${plan.keys} k LEFT JOIN (${targetDigests(plan)}) t ON ${keyMatch(plan, "k", "t")}
     WHERE t.${k} IS NULL OR t.${DIGEST} <> k.${DIGEST}`,
  );
  if (changed.length === 0) return;
  const lookup = sourceLookup(source, plan);
  const quiet = new ProblemLog();
  const digest = new RowDigest();
  const lines = function* () {
    for (const row of changed) {
      const [found] = lookup.all(...plan.spec.key.map((_, i) => row[`k${i}`]));
      const clean = found && validateRow(source, plan, found, options, quiet, quiet);
      if (clean) yield copyLine([...clean, rowDigest(digest, plan, clean).value]);
    }
  };
  await copyInto(tx, `${plan.staging} (${columnList(plan)}, ${DIGEST})`, lines(), () => {});
}

/** Reads one source row by its key, as {@link readRows} reads rows. */
function sourceLookup(source: Source, plan: TablePlan): ArrayStatement {
  return prepareArrays(
    source.db,
    `SELECT ${sourceColumns(source, plan)} FROM ${q(plan.spec.name)} WHERE ${
      plan.spec.key.map((k) => `${q(k)} = ?`).join(" AND ")
    }`,
  );
}

/**
 * Adds the rows a query finds to a problem log: with a reject file, every
 * row (through a cursor, so memory stays flat); otherwise the first
 * {@link EXAMPLES_PER_KIND} and the total. The query selects `key`,
 * optionally `value`, and is ordered.
 */
async function logRows(
  tx: Tx,
  query: string,
  params: unknown[],
  log: ProblemLog,
  problem: (row: postgres.Row) => Problem,
): Promise<number> {
  if (log.sink) {
    let total = 0;
    for await (const rows of tx.unsafe(query, params as never[]).cursor(1000)) {
      for (const row of rows) log.add(problem(row));
      total += rows.length;
    }
    return total;
  }
  const rows = await tx.unsafe(
    `SELECT *, count(*) OVER ()::int AS total FROM (${query}) found LIMIT ${EXAMPLES_PER_KIND}`,
    params as never[],
  );
  for (const row of rows) log.add(problem(row));
  if (rows.length === 0) return 0;
  log.count(problem(rows[0]).kind, rows[0].total - rows.length);
  return rows[0].total;
}

/**
 * Rows whose reference has no row in the referenced staging table (SQLite
 * does not enforce foreign keys). They are problems, or with --orphans=skip
 * deleted from staging and reported. Rows referring to rows that validation
 * refused are not orphans: the refused row is the problem.
 */
async function checkOrphans(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
): Promise<number> {
  const ref = plan.spec.references;
  const parent = plans.find((p) => p.spec.name === ref?.table);
  if (!ref || !parent) return 0;
  const match = referenceMatch(ref, "p", "s");
  const orphan = `NOT EXISTS (SELECT FROM ${parent.keys} p WHERE ${match})
    AND ${ref.columns.map((c) => `s.${q(c)}::text`).join(" || '/' || ")} <> ALL($1::text[])`;
  const into = options.orphans === "skip" ? log.policies : log.problems;
  const params = [log.refused.get(parent.spec.name)!];
  const found = await logRows(
    tx,
    `SELECT ${keyText(plan, "s")} AS key FROM ${plan.staging} s WHERE ${orphan}
     ORDER BY ${keyOrder(plan, "s")}`,
    params,
    into,
    (row) => ({ kind: "orphan-snapshot", table: plan.spec.name, key: row.key }),
  );
  if (found === 0 || options.orphans !== "skip") return 0;
  return (await tx.unsafe(`DELETE FROM ${plan.staging} s WHERE ${orphan}`, params)).count;
}

/**
 * The target's CHECK constraints and unique indexes, evaluated set-based on
 * the staged rows, so that every offending row is named (PostgreSQL itself
 * would stop at the first). Rules that involve columns SQLite does not supply
 * are left to PostgreSQL, which enforces them when the rows are written.
 */
async function checkConstraints(
  tx: Tx,
  plan: TablePlan,
  options: Options,
  problems: ProblemLog,
): Promise<void> {
  const staged = new Set(plan.columns.map((c) => c.name));
  const covered = (columns: string[] | null) =>
    columns !== null && columns.length > 0 && columns.every((c) => staged.has(c));
  for (const check of plan.target.constraints) {
    if (check.type !== "c" || !covered(check.columns)) continue;
    await logRows(
      tx,
      `SELECT ${keyText(plan, "s")} AS key FROM ${plan.staging} s WHERE NOT (${check.expression})
       ORDER BY ${keyOrder(plan, "s")}`,
      [],
      problems,
      (row) => ({
        kind: "check-violation",
        table: plan.spec.name,
        key: row.key,
        constraint: `${check.name}: ${check.definition}`,
      }),
    );
  }
  const key = new Set(plan.spec.key);
  for (const index of plan.target.indexes) {
    if (!index.unique || !covered(index.columns)) continue;
    if (index.columns!.length === key.size && index.columns!.every((c) => key.has(c))) continue;
    const columns = index.columns!.map(q);
    const values = (alias: string) => columns.map((c) => `${alias}.${c}`).join(", ");
    // The rows as they will be: staged rows, plus target rows that stay.
    const kept = `UNION ALL SELECT ${keyText(plan, "t")}, ${values("t")}
      FROM ${plan.target.qualified} t
      WHERE NOT EXISTS (SELECT FROM ${plan.staging} s WHERE ${keyMatch(plan, "s", "t")})${
      options.prune ? ` AND NOT (${extraRow(plan)})` : ""
    }`;
    await logRows(
      tx,
      `WITH rows (key, ${columns.join(", ")}) AS (
         SELECT ${keyText(plan, "s")}, ${values("s")} FROM ${plan.staging} s ${kept})
       SELECT r.key, concat_ws(', ', ${values("r")}) AS value FROM rows r
       WHERE (${values("r")}) IN (SELECT ${columns.join(", ")} FROM rows
         WHERE ${columns.map((c) => `${c} IS NOT NULL`).join(" AND ")}
         GROUP BY ${columns.join(", ")} HAVING count(*) > 1)
       ORDER BY r.key COLLATE "C"`,
      [],
      problems,
      (row) => ({
        kind: "unique-violation",
        table: plan.spec.name,
        key: row.key,
        value: row.value,
        constraint: `${index.name}: ${
          index.definition.replace(/^CREATE UNIQUE INDEX \S+ ON /, "")
        }`,
      }),
    );
  }
}

/**
 * Updates only rows whose values are distinct, so a rerun over unchanged
 * data rewrites nothing and keeps `updated_at`.
 */
function updateSql(plan: TablePlan): string {
  const values = plan.columns.filter((c) => !plan.spec.key.includes(c.name));
  const assignments = values.map((c) => `${q(c.name)} = s.${q(c.name)}`);
  if (plan.touch) assignments.push(`${q(plan.touch)} = NOW()`);
  return `UPDATE ${plan.target.qualified} t SET ${assignments.join(", ")}
    FROM ${plan.changes} s
    WHERE ${keyMatch(plan, "s", "t")} AND NOT s.migrate_missing AND NOT s.migrate_equal`;
}

/**
 * True where two rows' values differ. JSONB equality walks both documents;
 * equal binary images (the usual case: both sides parsed from the same text
 * by the same server) settle it with a memory compare, about twice as fast
 * over a table of payloads. Different images may still hold equal values
 * (1.0 and 1.00), so those rows get the full comparison. `json` has no
 * equality operator: its text is compared, which is what it keeps.
 */
function distinct(columns: PlannedColumn[], a: string, b: string): string {
  if (columns.length === 0) return "false";
  const value = (c: PlannedColumn, alias: string) =>
    `${alias}.${q(c.name)}${c.target.baseName === "json" ? "::text" : ""}`;
  const list = (alias: string) => columns.map((c) => value(c, alias)).join(", ");
  const values = `(${list(a)}) IS DISTINCT FROM (${list(b)})`;
  if (!columns.some((c) => c.kind === "json")) return values;
  const image = (alias: string) => columns.map((c) => `${alias}.${q(c.name)}`).join(", ");
  return `CASE WHEN ROW(${image(a)})::record *= ROW(${
    image(b)
  })::record THEN false ELSE ${values} END`;
}

/** Identity columns that always generate their value need to be told to take ours. */
const overriding = (plan: TablePlan) =>
  plan.columns.some((c) => c.target.identityAlways) ? "OVERRIDING SYSTEM VALUE" : "";

/** Inserts the rows the target lacks, in key order so that index inserts stay local. */
function insertSql(plan: TablePlan): string {
  const rows = plan.changes ? `${plan.changes} s WHERE s.migrate_missing` : `${plan.staging} s`;
  return `INSERT INTO ${plan.target.qualified} (${columnList(plan)}) ${overriding(plan)}
    SELECT ${columnList(plan, "s.")} FROM ${rows}
    ORDER BY ${plan.spec.key.map((k) => `s.${q(k)}`).join(", ")}`;
}

const ON_DELETE: Record<string, string> = { c: "CASCADE", n: "SET NULL", d: "SET DEFAULT" };

/**
 * Runs a prune: the rows it deletes may be what other tables' foreign keys
 * point at, and with ON DELETE CASCADE, SET NULL or SET DEFAULT PostgreSQL
 * deletes or changes those tables' rows too (the schema's own rule, not
 * ours to refuse). Each such table touched gets a line, with how many of its
 * rows (this transaction's own counts, read before and after): --dry-run
 * shows them too. Returns the rows pruned.
 */
async function pruneRows(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  statement: string,
  step: (line: string) => void,
): Promise<number> {
  const dependents = await tx.unsafe(
    `SELECT format('%I.%I', n.nspname, r.relname) AS name, c.conrelid::oid::text AS oid,
            c.conname, c.confdeltype AS action
     FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
       JOIN pg_namespace n ON n.oid = r.relnamespace
     WHERE c.contype = 'f' AND c.confrelid = $1::oid AND c.confdeltype IN ('c', 'n', 'd')
       AND c.conrelid <> ALL($2::oid[])
     ORDER BY 1, 3`,
    [plan.target.oid, plans.map((p) => p.target.oid)],
  );
  const touched = async () =>
    await Promise.all(dependents.map(async (d) => {
      const [{ n }] = await tx.unsafe(
        `SELECT (pg_stat_get_xact_tuples_deleted($1::oid)
                 + pg_stat_get_xact_tuples_updated($1::oid))::int AS n`,
        [d.oid],
      );
      return n as number;
    }));
  const before = await touched();
  const pruned = (await tx.unsafe(statement)).count;
  const after = await touched();
  dependents.forEach((d, i) => {
    const n = after[i] - before[i];
    if (n === 0) return;
    step(
      `  … and ${d.action === "c" ? "deleted" : "changed"} ${n} row${
        n === 1 ? "" : "s"
      } of ${d.name} (its foreign key ${d.conname} is ON DELETE ${ON_DELETE[d.action]})`,
    );
  });
  return pruned;
}

function pruneSql(plan: TablePlan): string {
  return `DELETE FROM ${plan.target.qualified} t WHERE ${extraRow(plan)}`;
}

/** A target row (alias t) whose key SQLite does not have. */
const extraRow = (plan: TablePlan) =>
  `NOT EXISTS (SELECT FROM ${plan.keys} k WHERE ${keyMatch(plan, "k", "t")})`;

/** Below this many new rows, per-row index and key checks cost less than rebuilding. */
const BULK_INSERT_ROWS = 10_000;
const INSUFFICIENT_PRIVILEGE = "42501";
const UNIQUE_VIOLATION = "23505";

/**
 * Fresh statistics for a table just filled, so that the foreign key check and
 * the verification plan joins for its real size (autovacuum has not seen it).
 */
async function analyzeKeys(tx: Tx, plan: TablePlan): Promise<void> {
  await tx.unsafe(`ANALYZE ${plan.target.qualified} (${plan.spec.key.map(q).join(", ")})`);
}

/**
 * What a bulk load into an empty table may take away and put back: foreign
 * keys, primary key and unique constraints that no other table's foreign key
 * depends on, and indexes that back no constraint (B-tree, GIN, any kind).
 */
function suspendable(plan: TablePlan, checks = false) {
  const constraints = plan.target.constraints.filter((c) =>
    c.type === "f" || (["p", "u"].includes(c.type) && !c.referenced) ||
    // A first run checks CHECK constraints when it re-creates them, all rows
    // at once, rather than one row into COPY; one not yet valid must stay,
    // to check the new rows.
    (checks && c.type === "c" && !c.definition.endsWith("NOT VALID"))
  );
  const indexes = plan.target.indexes.filter((i) => !i.constraint && !i.referenced);
  return { constraints, indexes };
}

type Suspended = ReturnType<typeof suspendable>;

/** Drops what {@link suspendable} lists, for a bulk load; {@link restore} puts it back. */
async function suspend(tx: Tx, plan: TablePlan, suspended: Suspended): Promise<void> {
  for (const c of suspended.constraints) {
    await tx.unsafe(`ALTER TABLE ${plan.target.qualified} DROP CONSTRAINT ${q(c.name)}`);
  }
  for (const index of suspended.indexes) {
    await tx.unsafe(`DROP INDEX ${plan.target.schema}.${q(index.name)}`);
  }
}

/** Re-creates what {@link suspendable} took away, keys and indexes first, foreign keys last. */
async function restore(tx: Tx, plan: TablePlan, suspended: Suspended): Promise<void> {
  const table = plan.target.qualified;
  const add = async (c: TargetConstraint) => {
    await tx.unsafe(`ALTER TABLE ${table} ADD CONSTRAINT ${q(c.name)} ${c.definition}`);
    if (c.comment !== null) {
      await tx.unsafe(`COMMENT ON CONSTRAINT ${q(c.name)} ON ${table} IS ${literal(c.comment)}`);
    }
  };
  for (const c of suspended.constraints.filter((c) => c.type !== "f")) await add(c);
  for (const index of suspended.indexes) {
    await tx.unsafe(
      index.definition + (index.tablespace ? ` TABLESPACE ${q(index.tablespace)}` : ""),
    );
    if (index.comment !== null) {
      await tx.unsafe(
        `COMMENT ON INDEX ${plan.target.schema}.${q(index.name)} IS ${literal(index.comment)}`,
      );
    }
  }
  for (const c of suspended.constraints.filter((c) => c.type === "f")) await add(c);
  for (const index of plan.target.indexes) {
    if (index.clustered) await tx.unsafe(`ALTER TABLE ${table} CLUSTER ON ${q(index.name)}`);
    if (index.replicaIdentity) {
      await tx.unsafe(`ALTER TABLE ${table} REPLICA IDENTITY USING INDEX ${q(index.name)}`);
    }
  }
}

/** A SQL string literal, for the few statements (COMMENT) that take no parameters. */
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/**
 * Writes one table: updates changed rows, then inserts missing ones.
 *
 * A bulk load into an empty table drops the table's keys and indexes,
 * inserts, and re-creates them: one build per index and one set-based
 * foreign key check instead of one of each per row. All of it happens inside
 * this transaction, so no one ever sees the table without them, and
 * re-creating validates every row. Without the privilege for that, rows go
 * in one by one.
 */
async function writeTable(
  tx: Tx,
  plan: TablePlan,
  diff: Diff,
  staged: number,
  step: (line: string) => void,
): Promise<{ inserted: number; updated: number }> {
  const update = diff.differ > 0 ? await updateRows(tx, plan, step) : { updated: 0 };
  // Rows that swapped values under a unique constraint: all written already.
  if (update.inserted !== undefined) return { inserted: update.inserted, updated: update.updated };
  const { updated } = update;
  const insert = async () => {
    const inserted = (await tx.unsafe(insertSql(plan))).count;
    if (inserted >= BULK_INSERT_ROWS) await analyzeKeys(tx, plan);
    return { inserted, updated };
  };
  const emptyTarget = diff.missing === staged && diff.extra === 0 && diff.differ === 0;
  if (!emptyTarget || staged < BULK_INSERT_ROWS) return insert();
  const suspended = suspendable(plan);
  if (suspended.constraints.length + suspended.indexes.length === 0) return insert();
  try {
    return await tx.savepoint(async (sp) => {
      await suspend(sp, plan, suspended);
      const inserted = (await sp.unsafe(
        `INSERT INTO ${plan.target.qualified} (${columnList(plan)}) ${overriding(plan)}
         SELECT ${columnList(plan)} FROM ${plan.staging}`,
      )).count;
      await analyzeKeys(sp, plan);
      await restore(sp, plan, suspended);
      return { inserted, updated };
    });
  } catch (error) {
    if ((error as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) throw error;
    return insert();
  }
}

/**
 * Unique constraints and indexes other than the key's, which an UPDATE
 * checks row by row: rows that swap values under one (two ranks of a day, two
 * surrogate ids) collide halfway, though the rows as they end up, which
 * {@link checkConstraints} judged, are fine. Those that no foreign key
 * depends on can be taken away for the writes and re-created after, which
 * checks every row at once, as a first run's bulk load does.
 */
function uniqueBesidesKey(plan: TablePlan): Suspended {
  const isKey = (columns: string[] | null) =>
    columns !== null && columns.length === plan.spec.key.length &&
    columns.every((c) => plan.spec.key.includes(c));
  return {
    constraints: plan.target.constraints.filter((c) =>
      ["p", "u"].includes(c.type) && !c.referenced && !isKey(c.columns)
    ),
    indexes: plan.target.indexes.filter((i) =>
      i.unique && !i.constraint && !i.referenced && !isKey(i.columns)
    ),
  };
}

/**
 * Updates the changed rows, in a savepoint where the table has such
 * constraints: if one refuses a row halfway, the table's updates and inserts
 * are written with them taken away, and they are re-created (then
 * `inserted` is set too). Where they cannot be taken away (no privilege),
 * PostgreSQL's refusal stands.
 */
async function updateRows(
  tx: Tx,
  plan: TablePlan,
  step: (line: string) => void,
): Promise<{ updated: number; inserted?: number }> {
  const unique = uniqueBesidesKey(plan);
  if (unique.constraints.length + unique.indexes.length === 0) {
    return { updated: (await tx.unsafe(updateSql(plan))).count };
  }
  try {
    return { updated: await tx.savepoint(async (sp) => (await sp.unsafe(updateSql(plan))).count) };
  } catch (error) {
    if ((error as { code?: string }).code !== UNIQUE_VIOLATION) throw error;
    const names = [...unique.constraints, ...unique.indexes].map((u) => u.name).join(", ");
    step(
      `rows of ${plan.spec.name} swap values under ${names}: writing them with it dropped and re-created, which needs the table to itself (the app's readers wait until COMMIT)`,
    );
    try {
      return await tx.savepoint(async (sp) => {
        await suspend(sp, plan, unique);
        const updated = (await sp.unsafe(updateSql(plan))).count;
        const inserted = (await sp.unsafe(insertSql(plan))).count;
        await restore(sp, plan, unique);
        return { inserted, updated };
      });
    } catch (retry) {
      if ((retry as { code?: string }).code === INSUFFICIENT_PRIVILEGE) throw error;
      throw retry;
    }
  }
}

/**
 * Serial and identity columns that SQLite filled: their sequences move past
 * the highest value, so that the app's next INSERT does not collide. Called
 * once, after every check passed, and only in a run that commits: setval is
 * never rolled back, so a dry run, or a run that fails, must not call it.
 */
async function syncSequences(
  tx: Tx,
  plans: TablePlan[],
  written: Map<TablePlan, Written>,
  options: Options,
): Promise<void> {
  if (options.mode !== "migrate") return;
  for (const plan of plans) {
    // Only where rows went in: a run that wrote nothing reads nothing more.
    const rows = written.get(plan);
    if (rows && rows.inserted + rows.updated > 0) await syncSequencesOf(tx, plan);
  }
}

async function syncSequencesOf(tx: Tx, plan: TablePlan): Promise<void> {
  for (const column of plan.columns) {
    if (column.kind !== "integer" || !column.target.filled) continue;
    const [{ sequence }] = await tx.unsafe(
      `SELECT pg_get_serial_sequence($1, $2) AS sequence`,
      [plan.target.qualified, column.name],
    );
    if (!sequence) continue;
    await tx.unsafe(
      `SELECT setval($1::regclass, max) FROM (SELECT max(${
        q(column.name)
      }) FROM ${plan.target.qualified}) m
       WHERE max IS NOT NULL AND max > (SELECT last_value FROM ${sequence})`,
      [sequence],
    );
  }
}

// ---------------------------------------------------------------------------
// Row digests: each field's canonical text hashed the same way on both sides
// ---------------------------------------------------------------------------
//
// Verification compares every target row with its SQLite source: JavaScript
// hashes a canonical text of each field of each source row while it reads
// SQLite, and PostgreSQL hashes the same text of each stored field
// (`col::text`, under the run's DateStyle and TimeZone). A field's hash is
// PostgreSQL's own `hashtextextended(text, place)` (Bob Jenkins' lookup3, 64
// bits, no extension needed), seeded with the field's place in digestOrder()
// (key first), so that equal values in two columns, or two columns' values
// swapped, do not cancel; a row's digest is the hash of no text seeded with
// its fields' hashes XORed (a NULL adds 0): through that hash, the same
// change in two rows of a rerun's bucket cannot cancel in the bucket's sum.
// Hashing fields apart costs PostgreSQL less than building one text of the
// row (no lengths to print and concatenate: half the time for a snapshot),
// and the key's hashes, shifted by place, give a rerun its bucket with no
// extra work. A row whose digests differ is not condemned on that
// alone: it is read again from SQLite and compared by value in PostgreSQL
// (so `1.0` stored as `1.00` still counts as equal JSONB), over bind
// parameters rather than COPY, so the second look does not share the first
// one's path.

/**
 * What `jsonb_out` prints for a JSON text, as UTF-8 bytes, without JSON.parse
 * (which loses number digits). Rules, each checked against PostgreSQL by the
 * differential test in migrate_test.ts: duplicate keys keep the last value;
 * keys sort by UTF-8 length, then bytewise; `{"a": 1, "b": [1, 2]}` spacing;
 * escapes decoded, then written as escape_json does; numbers as numeric_out
 * prints them (no exponent, display scale max(0, fraction digits − exponent),
 * no negative zero). It throws for any text that JSONB refuses (the
 * differential tests hold it to PostgreSQL's verdicts), so it also serves as
 * the validator of jsonb payloads. The result is a view of a reused buffer,
 * valid until the next call.
 */
const jsonbCanonical: (text: string) => Uint8Array = (() => {
  const encoder = new TextEncoder();

  let b: Uint8Array = new Uint8Array(0); // input bytes
  let n = 0; // input length
  let i = 0; // input cursor
  let out = new Uint8Array(1 << 16); // output bytes
  let o = 0; // output length
  let inBuf = new Uint8Array(1 << 16); // UTF-8 of jsonbText's argument

  // Decoded bytes of keys that contained escapes (plain keys are read from b).
  let ks = new Uint8Array(1 << 10);
  let kso = 0;

  // Stack of object members: key bytes [kA, kE) in b (or in ks if kIn[x] === 1),
  // member output range [mS, mE) in out, and the sort permutation.
  let kA = new Int32Array(256);
  let kE = new Int32Array(256);
  let mS = new Int32Array(256);
  let mE = new Int32Array(256);
  let ord = new Int32Array(256);
  let kIn = new Uint8Array(256);
  let top = 0;

  // Set by str(): where the last key's decoded bytes are.
  let keyA = 0;
  let keyE = 0;
  let keyInKs = 0;

  function encodeInput(text: string): Uint8Array {
    if (inBuf.length < text.length * 3) {
      inBuf = new Uint8Array(text.length * 3 + 1024);
    }
    const { written } = encoder.encodeInto(text, inBuf);
    return inBuf.subarray(0, written);
  }

  /**
   * UTF-8 JSON in, UTF-8 jsonb text out. The result is a view of an internal
   * buffer, valid only until the next call of any function of this module.
   */
  function jsonbBytes(input: Uint8Array): Uint8Array {
    b = input;
    n = input.length;
    i = 0;
    o = 0;
    kso = 0;
    top = 0;
    ensure(2 * n + 64); // output <= 2 * input, except numbers with exponents (they ensure())
    try {
      skipWs();
      value();
      skipWs();
      if (i !== n) fail("trailing characters");
      return out.subarray(0, o);
    } finally {
      b = EMPTY;
    }
  }
  const EMPTY = new Uint8Array(0);

  function fail(msg: string): never {
    throw new SyntaxError(`jsonb: ${msg} at byte ${i}`);
  }

  function ensure(size: number): void {
    if (out.length >= size) return;
    const bigger = new Uint8Array(Math.max(size, out.length * 2));
    bigger.set(out.subarray(0, o));
    out = bigger;
  }

  // The loops below call this only where the next byte may be whitespace
  // (at most a space): in compact JSON it never is, and the call itself
  // cost a tenth of the parse (the medium set's payloads: 310 → 280 ms).
  function skipWs(): void {
    const src = b;
    let ii = i;
    let c = src[ii];
    if (c > 32) return; // fast path: no whitespace (c is never undefined here in practice)
    while (c === 32 || c === 10 || c === 13 || c === 9) c = src[++ii];
    i = ii;
  }

  function value(): void {
    const c = b[i];
    switch (c) {
      case 0x7b: // {
        object();
        return;
      case 0x5b: // [
        array();
        return;
      case 0x22: // "
        str(false);
        return;
      case 0x74: // t
        literal(0x72, 0x75, 0x65, -1); // rue
        return;
      case 0x66: // f
        literal(0x61, 0x6c, 0x73, 0x65); // alse
        return;
      case 0x6e: // n
        literal(0x75, 0x6c, 0x6c, -1); // ull
        return;
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) number();
        else fail("unexpected character");
    }
  }

  function literal(c1: number, c2: number, c3: number, c4: number): void {
    const len = c4 < 0 ? 4 : 5;
    if (
      b[i + 1] !== c1 || b[i + 2] !== c2 || b[i + 3] !== c3 ||
      (c4 >= 0 && b[i + 4] !== c4)
    ) {
      fail("bad literal");
    }
    for (let k = 0; k < len; k++) out[o++] = b[i++];
  }

  // ---------------------------------------------------------------- strings

  /** Copies the string at i (b[i] === '"') to out in jsonb form. */
  function str(isKey: boolean): void {
    const src = b;
    const dst = out;
    let ii = i + 1;
    let oo = o;
    const start = ii;
    dst[oo++] = 0x22;
    for (;;) {
      const c = src[ii];
      if (c === 0x22) break;
      if (c === 0x5c || c === undefined || c < 0x20) {
        i = ii;
        o = oo;
        if (c === undefined) fail("unterminated string");
        if (c < 0x20) fail("control character in a string");
        escaped(isKey, start);
        return;
      }
      dst[oo++] = c;
      ii++;
    }
    dst[oo++] = 0x22;
    i = ii;
    o = oo;
    if (isKey) {
      keyA = start;
      keyE = i;
      keyInKs = 0;
    }
    i++;
  }

  function ensureKs(size: number): void {
    if (ks.length >= size) return;
    const bigger = new Uint8Array(Math.max(size, ks.length * 2));
    bigger.set(ks.subarray(0, kso));
    ks = bigger;
  }

  /** Rest of a string with escapes: decode, re-escape as escape_json does. */
  function escaped(isKey: boolean, start: number): void {
    if (isKey) {
      // the decoded key goes to ks: plain prefix first; decoding never grows
      ensureKs(kso + (n - start) + 16);
      keyA = kso;
      keyInKs = 1;
      for (let k = start; k < i; k++) ks[kso++] = b[k];
    }
    for (;;) {
      const c = b[i];
      if (c === 0x22) break;
      if (i >= n) fail("unterminated string");
      if (c < 0x20) fail("control character in a string");
      if (c !== 0x5c) {
        out[o++] = c;
        if (isKey) ks[kso++] = c;
        i++;
        continue;
      }
      const e = b[i + 1];
      i += 2;
      let d: number; // decoded character (code point)
      switch (e) {
        case 0x22:
        case 0x5c:
        case 0x2f:
          d = e;
          break;
        case 0x62:
          d = 8;
          break;
        case 0x66:
          d = 12;
          break;
        case 0x6e:
          d = 10;
          break;
        case 0x72:
          d = 13;
          break;
        case 0x74:
          d = 9;
          break;
        case 0x75: {
          d = hex4(i);
          i += 4;
          if (d === 0) fail("\\u0000 cannot be converted to text");
          if (d >= 0xd800 && d <= 0xdbff) {
            if (b[i] !== 0x5c || b[i + 1] !== 0x75) {
              fail("Unicode low surrogate must follow a high surrogate");
            }
            const lo = hex4(i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) {
              fail("Unicode low surrogate must follow a high surrogate");
            }
            i += 6;
            d = 0x10000 + ((d - 0xd800) << 10) + (lo - 0xdc00);
          } else if (d >= 0xdc00 && d <= 0xdfff) {
            fail("Unicode low surrogate must follow a high surrogate");
          }
          break;
        }
        default:
          return fail("bad escape");
      }
      if (d < 0x80) {
        if (isKey) ks[kso++] = d;
        writeEscapedAscii(d);
      } else {
        const at = o;
        writeUtf8(d);
        if (isKey) { for (let k = at; k < o; k++) ks[kso++] = out[k]; }
      }
    }
    out[o++] = 0x22;
    if (isKey) keyE = kso;
    i++;
  }

  const HEX = [
    0x30,
    0x31,
    0x32,
    0x33,
    0x34,
    0x35,
    0x36,
    0x37,
    0x38,
    0x39,
    0x61,
    0x62,
    0x63,
    0x64,
    0x65,
    0x66,
  ];

  /** escape_json for one ASCII character. */
  function writeEscapedAscii(d: number): void {
    if (d >= 0x20) {
      if (d === 0x22 || d === 0x5c) out[o++] = 0x5c;
      out[o++] = d;
      return;
    }
    out[o++] = 0x5c;
    switch (d) {
      case 8:
        out[o++] = 0x62;
        return;
      case 12:
        out[o++] = 0x66;
        return;
      case 10:
        out[o++] = 0x6e;
        return;
      case 13:
        out[o++] = 0x72;
        return;
      case 9:
        out[o++] = 0x74;
        return;
      default:
        out[o++] = 0x75; // u00xx, lowercase hex
        out[o++] = 0x30;
        out[o++] = 0x30;
        out[o++] = HEX[d >> 4];
        out[o++] = HEX[d & 15];
    }
  }

  function writeUtf8(cp: number): void {
    if (cp < 0x800) {
      out[o++] = 0xc0 | (cp >> 6);
    } else if (cp < 0x10000) {
      out[o++] = 0xe0 | (cp >> 12);
      out[o++] = 0x80 | ((cp >> 6) & 0x3f);
    } else {
      out[o++] = 0xf0 | (cp >> 18);
      out[o++] = 0x80 | ((cp >> 12) & 0x3f);
      out[o++] = 0x80 | ((cp >> 6) & 0x3f);
    }
    out[o++] = 0x80 | (cp & 0x3f);
  }

  function hex4(at: number): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = b[at + k];
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else return fail("bad \\u escape");
      v = (v << 4) | d;
    }
    return v;
  }

  // ---------------------------------------------------------------- numbers

  function number(): void {
    const src = b;
    let ii = i;
    const start = ii;
    let c = src[ii];
    const neg = c === 0x2d;
    if (neg) c = src[++ii];
    const intStart = ii;
    while (c >= 0x30 && c <= 0x39) c = src[++ii];
    const intEnd = ii;
    let fracStart = ii;
    let fracEnd = ii;
    let zeroFrac = true;
    let badFrac = false;
    if (c === 0x2e) {
      fracStart = ++ii;
      c = src[ii];
      while (c >= 0x30 && c <= 0x39) {
        if (c !== 0x30) zeroFrac = false;
        c = src[++ii];
      }
      fracEnd = ii;
      badFrac = fracEnd === fracStart;
    }
    i = ii;
    if (intEnd === intStart || badFrac) fail("bad number");
    if (src[intStart] === 0x30 && intEnd - intStart > 1) fail("leading zero");
    if (c !== 0x65 && c !== 0x45) {
      if (fracEnd - fracStart > NUMERIC_DSCALE_MAX || intEnd - intStart > NUMERIC_MAX_INT_DIGITS) {
        fail("value overflows numeric format");
      }
      // No exponent: JSON has no leading zeros, so the text already is
      // numeric_out's, except that numeric has no negative zero.
      const from = neg && src[intStart] === 0x30 && zeroFrac ? intStart : start;
      const dst = out;
      let oo = o;
      for (let k = from; k < ii; k++) dst[oo++] = src[k];
      o = oo;
      return;
    }
    c = b[++i];
    let expNeg = false;
    if (c === 0x2b || c === 0x2d) {
      expNeg = c === 0x2d;
      c = b[++i];
    }
    const expStart = i;
    while (c >= 0x30 && c <= 0x39) c = b[++i];
    if (i === expStart) fail("bad number");
    let exp = Number(ascii(expStart, i));
    if (expNeg) exp = -exp;
    const text = scaled(
      neg,
      ascii(intStart, intEnd),
      ascii(fracStart, fracEnd),
      exp,
    );
    ensure(o + text.length + 2 * (n - i) + 64);
    for (let k = 0; k < text.length; k++) out[o++] = text.charCodeAt(k);
  }

  function ascii(from: number, to: number): string {
    let s = "";
    for (let k = from; k < to; k++) s += String.fromCharCode(b[k]);
    return s;
  }

  const NUMERIC_DSCALE_MAX = 16383;
  const NUMERIC_MAX_INT_DIGITS = 131072; // (NUMERIC_WEIGHT_MAX + 1) * DEC_DIGITS

  /** numeric_out(numeric_in("<int>.<frac>e<exp>")). */
  function scaled(neg: boolean, int: string, frac: string, exp: number): string {
    // PG 15 set_var_from_str rejects |exponent| >= INT_MAX / 2.
    if (!(Math.abs(exp) < 1073741823)) fail("value overflows numeric format");
    const dscale = Math.max(0, frac.length - exp);
    if (dscale > NUMERIC_DSCALE_MAX) fail("value overflows numeric format");
    const digits = int + frac;
    let first = 0; // first non-zero digit
    while (first < digits.length && digits.charCodeAt(first) === 0x30) first++;
    if (first === digits.length) {
      // zero: no sign, dscale zeros
      return dscale > 0 ? "0." + "0".repeat(dscale) : "0";
    }
    const point = int.length + exp; // decimal point position within digits
    if (point - first > NUMERIC_MAX_INT_DIGITS) {
      fail("value overflows numeric format");
    }
    let intPart: string;
    if (point <= first) intPart = "0";
    else if (point >= digits.length) {
      intPart = digits.slice(first) + "0".repeat(point - digits.length);
    } else intPart = digits.slice(first, point);
    let res = neg ? "-" + intPart : intPart;
    if (dscale > 0) {
      // digits after the point == dscale exactly here (frac.length - exp > 0)
      res += "." +
        (point < 0 ? "0".repeat(-point) + digits : digits.slice(point));
    }
    return res;
  }

  // ---------------------------------------------------------------- containers

  function array(): void {
    out[o++] = 0x5b;
    i++;
    if (b[i] <= 32) skipWs();
    if (b[i] === 0x5d) {
      out[o++] = 0x5d;
      i++;
      return;
    }
    for (;;) {
      if (b[i] === 0x22) str(false);
      else value();
      if (b[i] <= 32) skipWs();
      const c = b[i++];
      if (c === 0x2c) {
        out[o++] = 0x2c;
        out[o++] = 0x20;
        if (b[i] <= 32) skipWs();
      } else if (c === 0x5d) {
        out[o++] = 0x5d;
        return;
      } else {
        i--;
        fail("expected , or ]");
      }
    }
  }

  function growStack(): void {
    const size = kA.length * 2;
    const g32 = (a: Int32Array) => {
      const x = new Int32Array(size);
      x.set(a);
      return x;
    };
    kA = g32(kA);
    kE = g32(kE);
    mS = g32(mS);
    mE = g32(mE);
    ord = g32(ord);
    const x = new Uint8Array(size);
    x.set(kIn);
    kIn = x;
  }

  /** jsonb key order: UTF-8 length, then bytes. 0 means equal keys. */
  function compareKeys(x: number, y: number): number {
    const ax = kA[x];
    const ay = kA[y];
    const len = kE[x] - ax;
    const d = len - (kE[y] - ay);
    if (d !== 0) return d;
    const bx = kIn[x] === 0 ? b : ks;
    const by = kIn[y] === 0 ? b : ks;
    for (let k = 0; k < len; k++) {
      const diff = bx[ax + k] - by[ay + k];
      if (diff !== 0) return diff;
    }
    return 0;
  }

  function object(): void {
    out[o++] = 0x7b;
    i++;
    if (b[i] <= 32) skipWs();
    if (b[i] === 0x7d) {
      out[o++] = 0x7d;
      i++;
      return;
    }
    const base = top;
    const bodyStart = o;
    for (;;) {
      if (b[i] !== 0x22) fail("expected key");
      const ms = o;
      str(true);
      const ka = keyA;
      const ke = keyE;
      const kin = keyInKs;
      if (b[i] <= 32) skipWs();
      if (b[i] !== 0x3a) fail("expected :");
      i++;
      out[o++] = 0x3a;
      out[o++] = 0x20;
      if (b[i] <= 32) skipWs();
      if (b[i] === 0x22) str(false);
      else value();
      if (top >= kA.length) growStack();
      kA[top] = ka;
      kE[top] = ke;
      kIn[top] = kin;
      mS[top] = ms;
      mE[top] = o;
      top++;
      if (b[i] <= 32) skipWs();
      const c = b[i++];
      if (c === 0x2c) {
        out[o++] = 0x2c;
        out[o++] = 0x20;
        if (b[i] <= 32) skipWs();
      } else if (c === 0x7d) break;
      else {
        i--;
        fail("expected , or }");
      }
    }
    const cnt = top - base;
    if (cnt > 1) {
      // Stable insertion sort of member indices; equal keys keep input order.
      let reorder = false;
      ord[base] = base;
      for (let a = base + 1; a < top; a++) {
        let p = a - 1;
        for (; p >= base; p--) {
          const cmp = compareKeys(ord[p], a);
          if (cmp < 0) break;
          if (cmp === 0) {
            reorder = true; // duplicate: must drop one
            break;
          }
          ord[p + 1] = ord[p];
        }
        if (p !== a - 1) reorder = true;
        ord[p + 1] = a;
      }
      if (reorder) {
        // Copy the body past the end of out, then copy members back in order,
        // keeping only the last of each run of equal keys.
        const len = o - bodyStart;
        ensure(o + len + 16);
        const shift = o - bodyStart;
        out.copyWithin(o, bodyStart, o);
        o = bodyStart;
        for (let a = base; a < top; a++) {
          const x = ord[a];
          if (a + 1 < top && compareKeys(x, ord[a + 1]) === 0) continue;
          if (o !== bodyStart) {
            out[o++] = 0x2c;
            out[o++] = 0x20;
          }
          const s0 = mS[x] + shift;
          const s1 = mE[x] + shift;
          out.copyWithin(o, s0, s1);
          o += s1 - s0;
        }
      }
    }
    top = base;
    out[o++] = 0x7d;
  }

  // Validation parses a row's payload, and its digest needs the result right
  // after: one text remembered makes that one parse. Every call comes here,
  // so the buffer behind the remembered result changes only with it.
  let lastText: string | null = null;
  let lastResult: Uint8Array = EMPTY;
  return (text: string): Uint8Array => {
    if (text === lastText) return lastResult;
    lastText = null;
    lastResult = jsonbBytes(encodeInput(text));
    lastText = text;
    return lastResult;
  };
})();

/** True if JSONB accepts the text: {@link jsonbCanonical} parses it with JSONB's rules. */
function isJsonb(text: string): boolean {
  try {
    jsonbCanonical(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * PostgreSQL's hash_bytes_extended with seed 0: what `hashtextextended(text, 0)`
 * returns, as its high and low 32 bits (unsigned), into `into`: no BigInt
 * per row.
 */
function hashBytesExtended(
  k: Uint8Array,
  length: number,
  into: Halves,
  words: Int32Array | null = null,
  seedLow = 0,
  seedHigh = 0,
): void {
  let a = (0x9e3779b9 + length + 3923095) | 0;
  let b = a;
  let c = a;
  if (seedLow !== 0 || seedHigh !== 0) {
    // A seed perturbs the state: its high half into a, its low half into b,
    // then mix(a, b, c) as below (inline, like the loop's: a function would
    // have to allocate to return three numbers).
    a = (a + seedHigh) | 0;
    b = (b + seedLow) | 0;
    a = (a - c) | 0, a ^= (c << 4) | (c >>> 28), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 6) | (a >>> 26), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 8) | (b >>> 24), b = (b + a) | 0;
    a = (a - c) | 0, a ^= (c << 16) | (c >>> 16), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 19) | (a >>> 13), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 4) | (b >>> 28), b = (b + a) | 0;
  }
  let i = 0;
  let rest = length;
  while (rest >= 12) {
    if (words !== null) {
      const w = i >> 2;
      a = (a + words[w]) | 0;
      b = (b + words[w + 1]) | 0;
      c = (c + words[w + 2]) | 0;
    } else {
      a = (a + (k[i] | (k[i + 1] << 8) | (k[i + 2] << 16) | (k[i + 3] << 24))) | 0;
      b = (b + (k[i + 4] | (k[i + 5] << 8) | (k[i + 6] << 16) | (k[i + 7] << 24))) | 0;
      c = (c + (k[i + 8] | (k[i + 9] << 8) | (k[i + 10] << 16) | (k[i + 11] << 24))) | 0;
    }
    // mix(a, b, c)
    a = (a - c) | 0, a ^= (c << 4) | (c >>> 28), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 6) | (a >>> 26), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 8) | (b >>> 24), b = (b + a) | 0;
    a = (a - c) | 0, a ^= (c << 16) | (c >>> 16), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 19) | (a >>> 13), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 4) | (b >>> 28), b = (b + a) | 0;
    i += 12;
    rest -= 12;
  }
  // The last 11 bytes, little-endian; the lowest byte of c is left to the length.
  for (let j = 0; j < rest; j++) {
    const byte = k[i + j];
    if (j < 4) a = (a + (byte << (8 * j))) | 0;
    else if (j < 8) b = (b + (byte << (8 * (j - 4)))) | 0;
    else c = (c + (byte << (8 * (j - 7)))) | 0;
  }
  // final(a, b, c)
  c ^= b, c = (c - ((b << 14) | (b >>> 18))) | 0;
  a ^= c, a = (a - ((c << 11) | (c >>> 21))) | 0;
  b ^= a, b = (b - ((a << 25) | (a >>> 7))) | 0;
  c ^= b, c = (c - ((b << 16) | (b >>> 16))) | 0;
  a ^= c, a = (a - ((c << 4) | (c >>> 28))) | 0;
  b ^= a, b = (b - ((a << 14) | (a >>> 18))) | 0;
  c ^= b, c = (c - ((b << 24) | (b >>> 8))) | 0;
  into.high = b >>> 0;
  into.low = c >>> 0;
}

/**
 * True where an Int32Array reads memory little-endian (x86, ARM): the hash
 * then loads its input a word at a time, as PostgreSQL's does on aligned
 * input, instead of a byte at a time.
 */
const LITTLE_ENDIAN = new Uint8Array(new Int32Array([1]).buffer)[0] === 1;

/** A 64-bit value as two unsigned 32-bit halves. */
interface Halves {
  high: number;
  low: number;
}

const TWO_32 = 2 ** 32;

/** The signed 64-bit value of two halves, as PostgreSQL's bigint holds it. */
const int64 = (high: number, low: number) => BigInt.asIntN(64, (BigInt(high) << 32n) + BigInt(low));

/**
 * A sum of digests modulo 2^64, what PostgreSQL's `sum(digest)` is modulo
 * 2^64. The halves are summed apart as doubles, carried before they could
 * lose a bit.
 */
class DigestSum {
  /** Source rows read so far (for progress); `rows` counts the rows summed. */
  read = 0;
  rows = 0;
  #high = 0;
  #low = 0;

  add(digest: Halves): void {
    this.rows++;
    this.#high += digest.high;
    this.#low += digest.low;
    if (this.#low >= 2 ** 52) {
      const carry = Math.floor(this.#low / TWO_32);
      this.#high = (this.#high + carry) % TWO_32;
      this.#low -= carry * TWO_32;
    }
  }

  /** The sum as a signed 64-bit value. */
  get value(): bigint {
    const carry = Math.floor(this.#low / TWO_32);
    return int64((this.#high + carry) % TWO_32, this.#low - carry * TWO_32);
  }
}

/**
 * The hash that PostgreSQL computes for `text` with `hashtextextended(text, 0)`.
 *
 * @example
 * ```ts
 * import { hashTextExtended } from "./migrate.ts";
 * hashTextExtended("abc"); // equals SELECT hashtextextended('abc', 0)
 * ```
 */
export function hashTextExtended(text: string): bigint {
  const bytes = new TextEncoder().encode(text);
  const halves = { high: 0, low: 0 };
  hashBytesExtended(bytes, bytes.length, halves);
  return int64(halves.high, halves.low);
}

/**
 * The canonical text of `jsonb_out` for a JSON text that JSONB accepts.
 *
 * @example
 * ```ts
 * import { jsonbText } from "./migrate.ts";
 * jsonbText('{"b": 1e2, "a": -0}'); // '{"a": 0, "b": 100}'
 * ```
 */
export function jsonbText(text: string): string {
  return new TextDecoder().decode(jsonbCanonical(text));
}

const SHORT_TEXT = 64;

/** Builds one row's canonical text as UTF-8 in a reused buffer, then hashes it. */
class RowDigest {
  #buffer = new Uint8Array(1 << 16);
  /** The buffer as 32-bit words, for the hash (null where memory is big-endian). */
  #words: Int32Array | null = LITTLE_ENDIAN ? new Int32Array(this.#buffer.buffer) : null;
  #length = 0;
  #encoder = new TextEncoder();

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const bigger = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + bytes));
    bigger.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = bigger;
    this.#words = LITTLE_ENDIAN ? new Int32Array(bigger.buffer, 0, bigger.length >> 2) : null;
  }

  /**
   * The last value at each place, and its field hash: a value equal to the
   * last row's (a snapshot's date and time range, mostly) is hashed once.
   */
  #last: unknown[] = [];
  #lastHigh: number[] = [];
  #lastLow: number[] = [];
  #again = false;

  /** Whether the field is the same value as at this place in the last row. */
  #same(value: string | number): boolean {
    if (this.#last[this.#place] === value) return this.#again = true;
    this.#last[this.#place] = value;
    return false;
  }

  /** A field's text, as UTF-8. */
  raw(text: string): void {
    if (this.#same(text)) return;
    this.#reserve(text.length * 3);
    // Short ASCII text (keys, dates, numbers) is copied by hand: cheaper than
    // a call into the encoder for every field of every row.
    if (text.length <= SHORT_TEXT) {
      const start = this.#length;
      let i = 0;
      for (; i < text.length; i++) {
        const code = text.charCodeAt(i);
        if (code >= 0x80) break;
        this.#buffer[start + i] = code;
      }
      if (i === text.length) {
        this.#length += i;
        return;
      }
    }
    this.#length += this.#encoder.encodeInto(text, this.#buffer.subarray(this.#length)).written;
  }

  /** A NULL field: it adds nothing to the digest. */
  null(): void {
    this.#null = true;
  }

  /**
   * An integer field, as int2/4/8out print it. A number's digits are written
   * one by one: String() of each row's integer cost more than its hash.
   */
  integer(value: number | bigint): void {
    if (typeof value === "bigint") return this.raw(String(value));
    if (this.#same(value)) return;
    this.#reserve(18);
    const buffer = this.#buffer;
    let at = this.#length;
    if (value < 0) {
      buffer[at++] = 0x2d; // -
      value = -value;
    }
    let digits = 1;
    for (let power = 10; power <= value; power *= 10) digits++;
    for (let d = at + digits - 1; d >= at; d--) {
      buffer[d] = 0x30 + (value % 10);
      value = Math.floor(value / 10);
    }
    this.#length = at + digits;
  }

  /** A field's text, already UTF-8. */
  bytes(bytes: Uint8Array): void {
    this.#last[this.#place] = undefined;
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** The last row's digest, as halves; see {@link value}. */
  high = 0;
  low = 0;
  /** The last row's key hash: see {@link bucketSql}. */
  keyHash = 0;
  #high = 0;
  #low = 0;
  #keyHash = 0;
  #place = 0;
  #null = false;
  #field = { high: 0, low: 0 };

  /**
   * Ends a field: its text is hashed with its place in the row as the seed
   * and XORed into the row's digest (a NULL adds 0), and for a key field,
   * its low half shifted left by its place, into the key hash.
   */
  endField(key: boolean): void {
    if (!this.#null) {
      const field = this.#field;
      const place = this.#place;
      if (this.#again) {
        field.high = this.#lastHigh[place];
        field.low = this.#lastLow[place];
      } else {
        hashBytesExtended(this.#buffer, this.#length, field, this.#words, place);
        this.#lastHigh[place] = field.high;
        this.#lastLow[place] = field.low;
      }
      this.#high ^= field.high;
      this.#low ^= field.low;
      if (key) this.#keyHash ^= field.low << this.#place;
    }
    this.#place++;
    this.#length = 0;
    this.#null = false;
    this.#again = false;
  }

  /**
   * Ends a row: its digest, the hash of no text seeded with its fields'
   * hashes XORed, is in high and low; its key hash in keyHash. The XOR alone
   * would be linear: the same change in two rows of a bucket (ranks swapped)
   * flips both digests by the same bits, and their sum could stay the same
   * with odds of one in 2^20 to 2^27; through a hash, one in 2^64.
   */
  finish(): this {
    hashBytesExtended(this.#buffer, 0, this, null, this.#low, this.#high);
    this.keyHash = this.#keyHash;
    this.#high =
      this.#low =
      this.#keyHash =
      this.#place =
        0;
    return this;
  }

  /** The last digest as PostgreSQL's bigint. */
  get value(): bigint {
    return int64(this.high, this.low);
  }
}

/**
 * The digest's column order, which gives each field its seed: the key in key
 * order (its places 0, 1, … also shift its fields in a rerun's bucket), then
 * the other columns in plan order.
 */
function digestOrder(columns: PlannedColumn[], keyIndexes: number[]): number[] {
  return [...keyIndexes, ...columns.map((_, i) => i).filter((i) => !keyIndexes.includes(i))];
}

/** Adds one clean value, as PostgreSQL's `::text` of the stored value prints it. */
function addCanonical(digest: RowDigest, column: PlannedColumn, value: CleanValue): void {
  if (value === null) return digest.null();
  switch (column.kind) {
    case "json":
      return column.target.baseName === "jsonb"
        ? digest.bytes(jsonbCanonical(value as string))
        : digest.raw(value as string);
    case "text":
      // char(n)::text drops the padding, and with it any trailing spaces.
      return digest.raw(
        column.target.baseName === "bpchar"
          ? (value as string).replace(/ +$/, "")
          : value as string,
      );
    case "timestamp":
      return digest.raw(timestampText(value as string, column.target.baseName === "timestamptz"));
    case "integer":
      return digest.integer(value as number | bigint);
    default:
      return digest.raw(String(value));
  }
}

/**
 * A timestamp as PostgreSQL prints it with DateStyle ISO and TimeZone UTC:
 * `2024-01-31 09:05:00.5+00` for timestamptz (an offset in the input is
 * applied), `2024-01-31 09:05:00.5` for timestamp (an offset is ignored, as
 * PostgreSQL ignores it).
 */
function timestampText(text: string, withZone: boolean): string {
  // `YYYY-MM-DD HH:MM:SS` (CURRENT_TIMESTAMP's form, valid: see isTimestamp)
  // is printed as it is written.
  if (text.length === 19 && text.charCodeAt(10) === 0x20 && text.charCodeAt(16) === 0x3a) {
    return withZone ? `${text}+00` : text;
  }
  const match = ISO_TIMESTAMP.exec(text)!;
  const [, date, hour = "00", minute = "00", second = "00", fraction = "", offset] = match;
  const [year, month, day] = date.split("-").map(Number);
  const time = new Date(0);
  time.setUTCFullYear(year, month - 1, day);
  time.setUTCHours(Number(hour), Number(minute), Number(second));
  if (withZone && offset && offset !== "Z") {
    const digits = offset.replace(":", "");
    const minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5) || 0);
    time.setUTCMinutes(time.getUTCMinutes() - (digits[0] === "-" ? -minutes : minutes));
  }
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const fractionText = fraction.replace(/0+$/, "");
  return `${pad(time.getUTCFullYear(), 4)}-${pad(time.getUTCMonth() + 1)}-${
    pad(time.getUTCDate())
  } ${pad(time.getUTCHours())}:${pad(time.getUTCMinutes())}:${pad(time.getUTCSeconds())}${
    fractionText ? `.${fractionText}` : ""
  }${withZone ? "+00" : ""}`;
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
 * Staged rows the target lacks or holds otherwise, and target rows SQLite
 * lacks: what a run writes. Staging holds every source row, or on a rerun that
 * shipped keys first, the rows whose digests differed.
 */
async function diffTable(tx: Tx, plan: TablePlan): Promise<Diff> {
  const k = q(plan.spec.key[0]);
  plan.changes = `pg_temp.${q(`migrate_changes_${plan.spec.name}`)}`;
  // Staged rows whose digest the target lacks or has otherwise: only these
  // can need writing. Every other row is proven equal to its source here.
  await tx.unsafe(`CREATE TEMPORARY TABLE ${plan.changes} ON COMMIT DROP AS
    SELECT s.*, t.${k} IS NULL AS migrate_missing, false AS migrate_equal
    FROM ${plan.staging} s LEFT JOIN (${
    targetDigests(plan, plan.staging === plan.keys ? undefined : plan.staging)
  }) t ON ${keyMatch(plan, "s", "t")}
    WHERE t.${k} IS NULL OR t.${DIGEST} <> s.${DIGEST}`);
  await tx.unsafe(`ANALYZE ${plan.changes}`);
  // Equal by value after all (1.0 stored as 1.00): nothing to write.
  await tx.unsafe(`UPDATE ${plan.changes} c SET migrate_equal = true
    FROM ${plan.target.qualified} t
    WHERE ${keyMatch(plan, "c", "t")} AND NOT c.migrate_missing
      AND NOT (${distinct(plan.columns, "c", "t")})`);
  const [row] = await tx.unsafe(`SELECT
      count(*) FILTER (WHERE migrate_missing)::int AS missing,
      count(*) FILTER (WHERE NOT migrate_missing AND NOT migrate_equal)::int AS differ
    FROM ${plan.changes}`);
  const [{ extra }] = await tx.unsafe(
    `SELECT count(*)::int AS extra FROM ${plan.target.qualified} t WHERE ${extraRow(plan)}`,
  );
  return { missing: row.missing, extra, differ: row.differ };
}

/** The diff that decides the writes; into an empty table, every staged row is missing. */
async function diffBeforeWriting(tx: Tx, plan: TablePlan, staged: number): Promise<Diff> {
  const [{ empty }] = await tx.unsafe(
    `SELECT NOT EXISTS (SELECT FROM ${plan.target.qualified}) AS empty`,
  );
  return empty ? { missing: staged, extra: 0, differ: 0 } : diffTable(tx, plan);
}

/** Target rows that SQLite does not have, by key in byte order like SQLite's. */
async function extraExamples(tx: Tx, plan: TablePlan, log: ProblemLog): Promise<void> {
  await logRows(
    tx,
    `SELECT ${keyText(plan, "t")} AS key FROM ${plan.target.qualified} t WHERE ${extraRow(plan)}
     ORDER BY ${keyOrder(plan, "t")}`,
    [],
    log,
    (row) => ({ kind: "extra-row", table: plan.spec.name, key: row.key }),
  );
}

/**
 * The tutorial's checks (counts, JSONB objects, sample query) plus the proof
 * of content: every target row compared with its SQLite source.
 */
async function verifyTarget(
  tx: Tx,
  source: Source,
  plans: TablePlan[],
  skipped: Map<TablePlan, number>,
  options: Options,
): Promise<Verification> {
  const counts: CountCheck[] = [];
  const mismatches = new ProblemLog();
  let rechecked = 0;
  const triggered = plans.some((p) => p.target.triggers.length > 0);
  for (const plan of plans) {
    const [{ n }] = await tx.unsafe(`SELECT count(*)::int AS n FROM ${plan.target.qualified}`);
    const sqlite = source.tables[plan.spec.name].rows;
    counts.push({
      table: plan.spec.name,
      sqlite,
      expected: sqlite - skipped.get(plan)!,
      postgres: n,
    });
    rechecked += await verifyFromSource(tx, source, plan, options, mismatches, triggered);
  }
  const { jsonObjects, sample } = await payloadChecks(tx, plans);
  // --verify-only wrote nothing, so no trigger changed a row on the way in:
  // SQLite or PostgreSQL changed since the last run, and a run mends it.
  const hint = options.mode === "verify-only" ? VERIFY_ONLY_HINT : undefined;
  return {
    ok: mismatches.total === 0 && counts.every((c) => c.expected === c.postgres),
    counts,
    jsonObjects,
    sample,
    mismatches: mismatches.groups.map((group) => hint ? { ...group, hint } : group),
    rechecked,
  };
}

/**
 * Each target row's digest, computed by PostgreSQL from the stored values:
 * the same canonical text as {@link rowDigest} builds from SQLite's. Small
 * values are printed twice (length and text): a lateral subquery that
 * printed each once made the whole expression five times slower.
 */
function targetDigests(plan: TablePlan, onlyIn?: string): string {
  return `SELECT ${plan.spec.key.map((k) => `t.${q(k)}`).join(", ")}, ${
    digestSql(plan)
  } AS ${DIGEST}
    FROM ${plan.target.qualified} t${
    onlyIn ? ` WHERE EXISTS (SELECT FROM ${onlyIn} o WHERE ${keyMatch(plan, "o", "t")})` : ""
  }`;
}

/** A row's digest in SQL, over the target row `t`: see {@link RowDigest.finish}. */
function digestSql(plan: TablePlan): string {
  return rowDigestSql(fieldHashes(plan));
}

/** A row's digest in SQL from its fields' hashes. */
function rowDigestSql(hashes: string[]): string {
  return `hashtextextended('' COLLATE "C", ${hashes.join(" # ")})`;
}

/**
 * Each field's hash in SQL, in digest order: its text (`::text`, see
 * {@link addCanonical}) hashed with its place as the seed, 0 for NULL.
 */
function fieldHashes(plan: TablePlan): string[] {
  return plan.digestOrder.map((i, place) => {
    const column = plan.columns[i];
    const hash = `hashtextextended(t.${q(column.name)}::text COLLATE "C", ${place})`;
    return column.target.notNull ? hash : `coalesce(${hash}, 0)`;
  });
}

/** Rows whose digests differ are read again and compared by value, this many at a time. */
const RECHECK_BATCH = 500;
/** Beyond this many differing digests, the rows are reported without a second look. */
const RECHECK_MAX = 100_000;

/**
 * Compares every target row with its SQLite source, by digest, and rows
 * whose digests differ by value (see "Row digests"); logs rows that are
 * missing, extra or different as content mismatches. Returns how many rows
 * were compared by value.
 */
async function verifyFromSource(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ProblemLog,
  everyRow: boolean,
): Promise<number> {
  const k = q(plan.spec.key[0]);
  const found = `migrate_verify_${plan.spec.name}`;
  const keys = plan.spec.key.map((key, i) => `coalesce(s.${q(key)}, t.${q(key)})::text AS k${i}`);
  // Rows present on one side only; then digests. A rerun compared every
  // row's digest before writing, and only rows whose digests differed can
  // have been written since (the table is locked against other writers):
  // those are compared again, unless a trigger could have written any row.
  // A first run compares every row.
  await tx.unsafe(`CREATE TEMPORARY TABLE ${found} ON COMMIT DROP AS
    SELECT ${keys.join(", ")},
      CASE WHEN t.${k} IS NULL THEN 'missing in PostgreSQL' ELSE 'only in PostgreSQL' END AS what
    FROM ${plan.target.qualified} t FULL JOIN ${plan.keys} s ON ${keyMatch(plan, "s", "t")}
    WHERE t.${k} IS NULL OR s.${k} IS NULL`);
  const digests = targetDigests(plan, everyRow ? undefined : plan.changes);
  await tx.unsafe(`INSERT INTO ${found}
    SELECT ${plan.spec.key.map((key) => `s.${q(key)}::text`).join(", ")}, 'values differ'
    FROM (${digests}) t JOIN ${plan.keys} s ON ${keyMatch(plan, "s", "t")}
    WHERE t.${DIGEST} <> s.${DIGEST}`);
  const key = plan.spec.key.map((_, i) => `k${i}`).join(" || '/' || ");
  const differ = await tx.unsafe(
    `SELECT ${plan.spec.key.map((_, i) => `k${i}`).join(", ")} FROM ${found}
     WHERE what = 'values differ' LIMIT ${RECHECK_MAX + 1}`,
  );
  if (differ.length <= RECHECK_MAX) {
    // Equal by value after all (1.0 stored as 1.00): not a mismatch.
    const equal: string[] = [];
    for (let i = 0; i < differ.length; i += RECHECK_BATCH) {
      const batch = differ.slice(i, i + RECHECK_BATCH)
        .map((row) => plan.spec.key.map((_, j) => row[`k${j}`] as string));
      const different = new Set(await recheck(tx, source, plan, options, batch));
      equal.push(...batch.map((k) => k.join("/")).filter((k) => !different.has(k)));
    }
    await tx.unsafe(`DELETE FROM ${found} WHERE ${key} = ANY($1::text[])`, [equal]);
  }
  await logRows(
    tx,
    `SELECT ${key} AS key, what FROM ${found} ORDER BY ${key} COLLATE "C"`,
    [],
    log,
    (row) => ({ kind: "content-mismatch", table: plan.spec.name, key: row.key, value: row.what }),
  );
  return differ.length;
}

/**
 * Reads the rows with these keys from SQLite again and compares them with
 * the target by value, over bind parameters; returns the keys that differ.
 */
async function recheck(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  keys: string[][],
): Promise<string[]> {
  const lookup = sourceLookup(source, plan);
  const columns: (string | null)[][] = plan.columns.map(() => []);
  const quiet = new ProblemLog();
  for (const key of keys) {
    const [row] = lookup.all(...key);
    const clean = row ? validateRow(source, plan, row, options, quiet, quiet) : null;
    // A row that is gone or now invalid cannot match: its key alone shows it.
    plan.columns.forEach((_, i) => {
      const keyAt = plan.keyIndexes.indexOf(i);
      const value = clean ? clean[i] : keyAt >= 0 ? key[keyAt] : null;
      columns[i].push(value === null ? null : String(value));
    });
  }
  const typed = plan.columns.map((c, i) => `u.c${i}::${c.target.stageType} AS ${q(c.name)}`);
  const rows = await tx.unsafe(
    `SELECT ${keyText(plan, "s")} AS key
     FROM (SELECT ${typed.join(", ")} FROM unnest(${
      plan.columns.map((_, i) => `$${i + 1}::text[]`).join(", ")
    }) AS u(${plan.columns.map((_, i) => `c${i}`).join(", ")})) s
     LEFT JOIN ${plan.target.qualified} t ON ${keyMatch(plan, "s", "t")}
     WHERE t.${q(plan.spec.key[0])} IS NULL OR ${distinct(plan.columns, "s", "t")}`,
    columns as never[],
  );
  return rows.map((row) => row.key as string);
}

/** The seed's JSONB checks, where the target has tracks with a JSON raw_json (jsonb or json). */
async function payloadChecks(
  tx: Tx,
  plans: TablePlan[],
  counted?: number,
): Promise<{ jsonObjects: number; sample: Sample | null }> {
  const tracks = plans.find((p) => p.spec === TRACKS);
  const json = payloadJson(tracks);
  if (!tracks || !json) return { jsonObjects: 0, sample: null };
  const [{ objects }] = counted !== undefined ? [{ objects: counted }] : await tx.unsafe(
    `SELECT count(*)::int AS objects FROM ${tracks.target.qualified} t WHERE ${isObject(json)}`,
  );
  // In key order, the scan stops at the first track with an album.
  const hasName = tracks.columns.some((c) => c.name === "name");
  const [sample] = await tx.unsafe(
    `SELECT ${hasName ? "name" : "track_id"} AS name,
            ${json}->'album'->>'release_date' AS release_date, ${json}->>'explicit' AS explicit
     FROM ${tracks.target.qualified} t WHERE ${json} ? 'album' ORDER BY track_id LIMIT 1`,
  );
  return {
    jsonObjects: objects,
    sample: sample
      ? { name: sample.name, releaseDate: sample.release_date, explicit: sample.explicit }
      : null,
  };
}

/** The tracks' payload as jsonb in SQL, over the target row `t`, if the plan has one. */
function payloadJson(plan: TablePlan | undefined): string | null {
  const payload = plan?.spec === TRACKS &&
    plan.columns.find((c) => c.name === "raw_json" && c.kind === "json");
  return payload ? `t.${q(payload.name)}::jsonb` : null;
}

const isObject = (json: string) => `${json} IS NOT NULL AND jsonb_typeof(${json}) = 'object'`;

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
 * const report = await migrate({ sqlitePath: "app.db", mode: "dry-run" });
 * for (const t of report.tables) console.log(t.table, t.inserted, t.updated);
 * ```
 */
export async function migrate(options: Partial<Options> = {}): Promise<Report> {
  const resolved: Options = { ...resolveOptions([], {}).options, ...options };
  // A library caller's databaseUrl is used alone; the CLI passes the
  // connection it resolved from the environment too.
  resolved.connection = options.connection ??
    { ...resolveConnection(resolved.databaseUrl, "DATABASE_URL", {}) };
  resolved.connectTimeout = options.connectTimeout ?? resolved.connection.connectTimeout;
  const started = performance.now();
  getReady(resolved.connection);
  const source = openSource(resolved.sqlitePath);
  const rejects = resolved.rejectFile ? openRejectFile(resolved.rejectFile) : undefined;
  let sql: Sql | undefined;
  // Seconds to let the connection close politely. After a failure nothing is
  // worth waiting for: a query cut off with its connection never settles,
  // and would hold the exit for the whole timeout.
  let closeTimeout = 5;
  try {
    sql = await connect(resolved);
    return await sql.begin(async (tx) => {
      const report = await runInTransaction(tx, source, resolved, started, rejects?.sink);
      if (resolved.mode !== "migrate") throw new Rollback(report);
      report.committed = true;
      return report;
    }) as Report;
  } catch (error) {
    if (error instanceof Rollback) return error.report;
    closeTimeout = 0;
    throw asMigrationError(error, resolved.connection);
  } finally {
    rejects?.close();
    source.db.close();
    await sql?.end({ timeout: closeTimeout });
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
  return migrate({ ...options, mode: "verify-only" });
}

/** What the connection turned out to be: for the startup line and `--json`. */
export interface ConnectionInfo {
  /** `user@host:port/database`, never the password. */
  target: string;
  /** The TLS mode asked for (libpq ignores it on a Unix socket). */
  sslmode: SslMode;
  /** True for a Unix-domain socket. */
  socket: boolean;
  /** True if the connection is encrypted (TLS). */
  encrypted: boolean;
  /** What was verified of the server's certificate. */
  verified: "nothing" | "certificate" | "certificate and host name";
}

/** How one connection attempt uses TLS: not at all, unverified, or verified. */
type TlsAttempt = "plain" | "require" | "verify-ca" | "verify-full";

/**
 * libpq's modes as attempts in order: `allow` tries plain text first,
 * `prefer` tries TLS first; either falls back when the server refuses.
 */
const TLS_ATTEMPTS: Record<SslMode, TlsAttempt[]> = {
  disable: ["plain"],
  allow: ["plain", "require"],
  prefer: ["require", "plain"],
  require: ["require"],
  "verify-ca": ["verify-ca"],
  "verify-full": ["verify-full"],
};

// Failures that a second attempt with or without TLS cannot change.
const NOT_RETRIED = new Set(["28P01", "3D000", "ECONNREFUSED", "ENOTFOUND", "CONNECT_TIMEOUT"]);

/** postgres.js, loaded once, when a run starts (--help and --version never need it). */
let driver: Promise<typeof postgres> | undefined;
const loadDriver = () =>
  driver ??= import("postgres").then((module) => module.default, (error) => {
    driver = undefined; // a library caller's next run tries again
    throw error;
  });

/**
 * Starts what connecting waits for, so that it happens while SQLite opens:
 * loading postgres.js (~20 ms), and, where the connection may use TLS, the
 * process's first P-256 key. That first one costs ~45 ms (later ones, well
 * under 1), and PostgreSQL up to 17 offers only that curve for TLS
 * (`ssl_ecdh_curve = prime256v1`), so the handshake paid it: measured, the
 * first handshake took 45 ms, or 7 after a key made beforehand. WebCrypto
 * makes the key on another thread.
 */
function getReady(connection: ConnectionSettings): void {
  loadDriver().catch(() => {}); // awaited, and reported, by connect
  if (String(connection.host).startsWith("/") || connection.sslmode === "disable") return;
  crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"])
    .catch(() => {}); // nothing depends on it but the time
}

/**
 * Connects with exactly the settings resolved here: postgres.js would
 * otherwise fill gaps from PG* variables and defaults of its own.
 */
async function connect(options: Options): Promise<Sql> {
  const connection = options.connection!;
  const socket = connection.host.startsWith("/");
  // libpq ignores sslmode on Unix sockets: they are local and never encrypted.
  let attempts = socket ? ["plain" as const] : TLS_ATTEMPTS[connection.sslmode];
  if (
    !socket && connection.sslmode === "require" && connection.sslrootcert !== "system" &&
    fileExists(connection.sslrootcert)
  ) {
    // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
    attempts = ["verify-ca"];
  }
  const postgres = await loadDriver();
  for (const [i, attempt] of attempts.entries()) {
    const opener = socket
      ? undefined
      : tcpSocket(connection.host, connection.port, options.connectTimeout);
    const sql = postgres({
      host: connection.host,
      port: connection.port,
      path: socket ? `${connection.host}/.s.PGSQL.${connection.port}` : undefined,
      database: connection.database,
      user: connection.user,
      pass: () => connection.password ?? "",
      ssl: tlsOptions(attempt, connection),
      max: 1,
      connect_timeout: options.connectTimeout,
      idle_timeout: 0,
      max_lifetime: 0,
      // Unnamed statements only: a pooler in transaction mode (PgBouncer,
      // Supabase, Neon) may hand each transaction another server connection.
      prepare: false,
      fetch_types: true,
      // postgres.js reads PGDEBUG, PGKEEP_ALIVE, PGSSLNEGOTIATION… when these are absent.
      debug: false,
      keep_alive: 60,
      publications: "alltables",
      // Not in postgres.js's types: the usual SSLRequest, never direct TLS;
      // our own TCP socket (see tcpSocket).
      ...{
        sslnegotiation: null,
        socket: opener?.open,
      },
      onnotice: () => {},
      connection: { application_name: connection.applicationName },
    });
    try {
      const { state } = await sql`SELECT 1`;
      if (opener) opener.ready = true;
      // What the CLI needs to cancel the running statement on a signal.
      cancelKeySink?.({
        ...(socket
          ? { path: `${connection.host}/.s.PGSQL.${connection.port}` }
          : { host: connection.host, port: connection.port }),
        pid: state.pid,
        secret: state.secret,
      });
    } catch (error) {
      await sql.end({ timeout: 0 });
      const code = (error as { code?: unknown })?.code;
      const last = i === attempts.length - 1;
      if (last || typeof code !== "string" || NOT_RETRIED.has(code)) {
        throw whileConnecting(asMigrationError(error, connection));
      }
      continue;
    }
    try {
      options.onConnect?.({
        target: describeConnection(connection),
        sslmode: connection.sslmode,
        socket,
        encrypted: attempt !== "plain",
        verified: attempt === "verify-full"
          ? "certificate and host name"
          : attempt === "verify-ca"
          ? "certificate"
          : "nothing",
      });
    } catch (error) {
      await sql.end({ timeout: 0 });
      throw error;
    }
    return sql;
  }
  throw new Error("unreachable: no connection attempt");
}

/**
 * A connection that failed before any transaction began: not "rolled back".
 */
function whileConnecting(failure: MigrationError): MigrationError {
  if (failure.hint !== CONNECTION_LOST) return failure;
  return new MigrationError(failure.kind, failure.message, CONNECTION_HINTS[CLOSED_EARLY]);
}

/**
 * TCP sockets for postgres.js, with Nagle's algorithm off. postgres.js
 * leaves it on, so a COPY's last message (CopyDone) waited for the server's
 * delayed ACK of the data before it, PostgreSQL answering nothing until
 * CopyDone: measured, every COPY cost 40-90 ms however small (a rerun makes
 * four). postgres.js starts its connection timeout only once the socket is
 * connected, so the TCP connect gets the same limit here.
 *
 * A server that closes the connection before the handshake ends (a web
 * server on that port, a tunnel or load balancer whose far end is down)
 * makes postgres.js reconnect at once, forever, its timeout restarted each
 * time: so a second socket before the first connection is `ready` fails.
 */
function tcpSocket(host: string, port: number, timeoutSeconds: number) {
  const connectOne = (resolve: (socket: Socket) => void, reject: (error: Error) => void) => {
    const socket = connectTcp(port, host);
    socket.setNoDelay(true);
    // postgres.js names the TLS server (SNI) after the socket's host.
    Object.assign(socket, { host, port });
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    const timer = timeoutSeconds > 0
      ? setTimeout(() => {
        socket.destroy();
        fail(Object.assign(new Error(`connect CONNECT_TIMEOUT ${host}:${port}`), {
          code: "CONNECT_TIMEOUT",
        }));
      }, timeoutSeconds * 1000)
      : undefined;
    socket.once("error", fail);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", fail);
      resolve(socket);
    });
  };
  let opened = 0;
  const opener = {
    /** Set once the first connection answered a query. */
    ready: false,
    open: () =>
      new Promise<Socket>((resolve, reject) => {
        if (opened++ === 0 || opener.ready) return connectOne(resolve, reject);
        reject(Object.assign(
          new Error(`${host}:${port} closed the connection before PostgreSQL's handshake ended`),
          { code: CLOSED_EARLY },
        ));
      }),
  };
  return opener;
}

/** The code of {@link tcpSocket}'s failure when the server hung up during the handshake. */
const CLOSED_EARLY = "CLOSED_DURING_HANDSHAKE";

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** postgres.js's `ssl` option for one attempt. */
function tlsOptions(attempt: TlsAttempt, connection: ConnectionSettings) {
  if (attempt === "plain") return false;
  if (attempt === "require") return "require" as const;
  let ca: string | undefined;
  if (connection.sslrootcert !== "system") {
    try {
      ca = Deno.readTextFileSync(connection.sslrootcert);
    } catch {
      throw new MigrationError(
        "config",
        `root certificate file ${connection.sslrootcert} (from ${connection.sources.sslrootcert}) cannot be read; sslmode=${connection.sslmode} needs it to verify the server`,
        "give the CA certificate with sslrootcert=PATH or PGSSLROOTCERT, use sslrootcert=system for the system's trusted roots, or sslmode=require to encrypt without verifying",
      );
    }
  }
  const host = connection.host;
  return {
    ca,
    rejectUnauthorized: true,
    // verify-ca checks the chain only; verify-full also the host name asked for.
    checkServerIdentity: attempt === "verify-full"
      ? (_: string, cert: Parameters<typeof checkServerIdentity>[1]) =>
        checkServerIdentity(host, cert)
      : () => undefined,
  };
}

// ---------------------------------------------------------------------------
// First runs: straight into the empty target
// ---------------------------------------------------------------------------

/** Raised inside a first run's fast path: the careful path takes over from the start. */
class Abandon extends Error {
  constructor(readonly why: string) {
    super(`abandoned: ${why}`);
  }
}

/** A problem log for the fast path: the first problem hands the run to the careful path. */
class AbandoningLog extends ProblemLog {
  override add(problem: Problem): void {
    throw new Abandon(`${problem.kind} in ${problem.table}`);
  }
}

/** Validation for a fast path: problems and policies alike abandon it. */
function abandoningLog(plans: TablePlan[]): ValidationLog {
  return {
    problems: new AbandoningLog(),
    policies: new AbandoningLog(),
    refused: new Map(plans.map((p) => [p.spec.name, []])),
  };
}

/** Whether the target table has any row. */
async function hasRows(tx: Tx, plan: TablePlan): Promise<boolean> {
  const [{ filled }] = await tx.unsafe(
    `SELECT EXISTS (SELECT FROM ${plan.target.qualified}) AS filled`,
  );
  return filled;
}

/**
 * PostgreSQL's refusals that the careful path explains row by row: data
 * exceptions, integrity violations, privileges, a trigger's RAISE, features.
 * Anything else (a lost connection, a cancel) ends the run as it would anyway.
 */
const CAREFUL_PATH_EXPLAINS = /^(22|23|42|2B|0A|44|P0)[0-9A-Z]{3}$/;

/**
 * A first run, when every target table is empty: rows go from SQLite straight
 * into the target, without staging, so every payload is parsed and written
 * once, as a hand-tuned COPY does. Keys, indexes and foreign keys are
 * suspended and rebuilt as in a bulk write, which checks them all, and the
 * target's own CHECK constraints and triggers see every row. Verification
 * compares each table's row count and the sum of its rows' digests with
 * SQLite's: any row that differs changes the sum (see "Row digests").
 *
 * Only data that needs no explaining takes this path. The first problem
 * (an invalid value, an orphan, a duplicate), a refusal by PostgreSQL, or a
 * sum that differs rolls it back to its savepoint and returns null: the
 * careful path then stages and checks everything and names every offending
 * row. Nothing reaches the reject file from here.
 */
async function loadDirect(
  tx: Tx,
  source: Source,
  plans: TablePlan[],
  options: Options,
  step: (line: string) => void,
): Promise<FastResult | null> {
  if (options.mode === "verify-only") return null;
  for (const plan of plans) if (await hasRows(tx, plan)) return null;
  return await fastPath(tx, step, async (sp) => {
    const log = abandoningLog(plans);
    const written = new Map<TablePlan, Written>();
    const sums = new Map<TablePlan, DigestSum>();
    const linesOf = (plan: TablePlan) => {
      const sum = new DigestSum();
      sums.set(plan, sum);
      return directLines(source, plan, options, log, sum);
    };
    const counts = new Map<TablePlan, CountCheck>();
    const unverified: TablePlan[] = [];
    let ahead: Prefetch | undefined;
    for (const [k, plan] of plans.entries()) {
      if (duplicateSourceKeys(source, plan).length > 0) throw new Abandon("duplicate keys");
      const tableStarted = performance.now();
      const bulk = source.tables[plan.spec.name].rows >= BULK_INSERT_ROWS;
      const suspended = bulk ? suspendable(plan, true) : { constraints: [], indexes: [] };
      const writing = `writing ${plan.spec.name} straight into PostgreSQL`;
      step(`${writing} (first run${bulk ? "; keys and indexes are rebuilt after" : ""})`);
      const mine = ahead;
      // The next table's lines are made while PostgreSQL works on this one.
      ahead = k + 1 < plans.length ? new Prefetch(linesOf(plans[k + 1])) : undefined;
      const meanwhile = <T>(work: Promise<T>) => ahead ? ahead.during(work) : work;
      await meanwhile(suspend(sp, plan, suspended));
      const into = `${plan.target.qualified} (${columnList(plan)})`;
      const progress = () =>
        options.onProgress?.({
          table: plan.spec.name,
          done: sums.get(plan)!.read,
          total: source.tables[plan.spec.name].rows,
        });
      // The lines made ahead go first. Then PostgreSQL verifies the tables
      // written before, which nothing writes any more (no trigger of this
      // table or a later one could), while JavaScript makes more of this
      // table's lines: it would otherwise wait, and PostgreSQL wait for it.
      // (A table made ahead whole leaves nothing to make meanwhile: the
      // tables before it are verified at the end, with parallel workers.)
      if (
        mine && !mine.allMade && unverified.length > 0 &&
        plans.slice(k).every((p) => p.target.triggers.length === 0)
      ) {
        await copyInto(sp, into, mine.made(), progress, mine);
        for (const done of unverified.splice(0)) {
          step(`verifying ${done.spec.name} against SQLite while reading ${plan.spec.name}`);
          counts.set(done, await mine.during(verifySum(sp, source, done, sums.get(done)!, false)));
        }
        step(`${writing} (the rest)`);
      }
      await copyInto(sp, into, mine ? mine.lines() : linesOf(plan), progress, ahead);
      if (bulk) step(`indexing ${plan.spec.name}`);
      await meanwhile(checkOrphansDirect(sp, plans, plan, options, log));
      await meanwhile(restore(sp, plan, suspended));
      const inserted = sums.get(plan)!.rows;
      const seconds = (performance.now() - tableStarted) / 1000;
      written.set(plan, { inserted, updated: 0, pruned: 0, seconds });
      unverified.push(plan);
    }
    step("verifying every row against its source");
    for (const plan of unverified) {
      counts.set(plan, await verifySum(sp, source, plan, sums.get(plan)!));
    }
    const { jsonObjects, sample } = await payloadChecks(sp, plans);
    const verification: Verification = {
      ok: true,
      counts: plans.map((plan) => counts.get(plan)!),
      jsonObjects,
      sample,
      mismatches: [],
      rechecked: 0,
    };
    return { written, verification };
  });
}

/** What a fast path did, for the report. */
interface FastResult {
  written: Map<TablePlan, Written>;
  verification: Verification;
}

/**
 * Runs a fast path in a savepoint. When it abandons, or PostgreSQL refuses
 * something the careful path explains row by row, the savepoint is rolled
 * back, the reason shown as a step, and null returned.
 */
async function fastPath(
  tx: Tx,
  step: (line: string) => void,
  run: (sp: Tx) => Promise<FastResult>,
): Promise<FastResult | null> {
  try {
    return await tx.savepoint(run);
  } catch (error) {
    const code = (error as { code?: unknown })?.code;
    const why = error instanceof Abandon
      ? error.why
      : error instanceof CopyRefused
      ? `PostgreSQL refused rows for ${error.target}`
      : typeof code === "string" && CAREFUL_PATH_EXPLAINS.test(code)
      ? errorMessage(error)
      : null;
    if (why === null) throw error;
    step(`the fast path stopped (${why}): checking every row on the careful path`);
    return null;
  }
}

/**
 * Lets PostgreSQL share a scan of the target among parallel workers for the
 * rest of the transaction (or, with `on` false, no longer): computing
 * digests is CPU work, and the planner does not know what printing a payload
 * costs. Staging tables are temporary, and so never scanned in parallel.
 */
async function parallelScans(tx: Tx, on = true): Promise<void> {
  const value = (zero: string) => on ? zero : "DEFAULT";
  await tx.unsafe(`SET LOCAL parallel_setup_cost = ${value("0")}`);
  await tx.unsafe(`SET LOCAL parallel_tuple_cost = ${value("0")}`);
  await tx.unsafe(`SET LOCAL min_parallel_table_scan_size = ${value("0")}`);
}

/** One table's clean rows as COPY lines for the target itself, counted and summed into `sum`. */
function directLines(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  sum: DigestSum,
): Generator<string, number> {
  // OVERRIDING SYSTEM VALUE is implied: COPY writes identity columns as given.
  return encodedRows(source, plan, options, log, (read) => (sum.read = read), (clean, digest) => {
    sum.add(digest);
    return copyLine(clean);
  });
}

/** The most COPY text made ahead for the next table: memory stays flat whatever the size. */
const PREFETCH_BYTES = 16 << 20;
/** zlib's level for made-ahead chunks: level 1 packs snapshot lines to 58 %, 2 to 45 %. */
const PREFETCH_DEFLATE_LEVEL = 2;
/**
 * Inflated text sent between two full collections. Each chunk sent is a new
 * buffer outside V8's heap, copied again by postgres.js; V8 collects such
 * garbage only after tens of MB of it, and a first run sends twice its
 * made-ahead buffer in a burst (measured: 160-180 MiB peak without, see
 * collectGarbage).
 */
const PREFETCH_COLLECT_BYTES = 8 << 20;
/** Lines made between two looks at what PostgreSQL is doing. */
const PREFETCH_STEP = 64;

/**
 * The next table's COPY text, made while PostgreSQL is busy with this one's
 * (parsing its payloads, building its keys): JavaScript would otherwise
 * wait, and PostgreSQL wait for it later. Kept as UTF-8 bytes in one buffer,
 * allocated once and used round and round: a chunk's room is free again once
 * it is sent (postgres.js copies what it is given). A step's few dozen lines
 * go in as one string that dies young: text kept as strings until a chunk
 * was full outlived V8's young generation, and cost as much memory again.
 * Each full chunk is deflated in place where that makes it smaller (level 2:
 * snapshot lines to 45 %, 0.35 s of otherwise idle JavaScript per 16 MB
 * kept), so that twice the lines wait in the same memory; inflating one to
 * send it costs a tenth of making it.
 */
class Prefetch {
  #lines: Iterator<string>;
  #encoder = new TextEncoder();
  #ring: Uint8Array | null = null;
  /** Chunks ready to send (views of the ring), oldest first. */
  #chunks: { bytes: Uint8Array; packed: boolean }[] = [];
  /** The chunk being filled: [#open, #head). */
  #open = 0;
  #head = 0;
  /** Bytes held: the chunks and the one being filled. */
  #used = 0;
  /** Text made but not yet in the ring (it had no room). */
  #pending = "";
  #done = false;
  /** Bytes inflated since the last collection. */
  #inflated = 0;

  constructor(lines: Iterable<string>) {
    this.#lines = lines[Symbol.iterator]();
  }

  /** Makes a few dozen lines; false when all are made or the buffer is full. */
  step(): boolean {
    if (this.#done) return false;
    if (this.#pending === "") {
      let text = "";
      for (let k = 0; k < PREFETCH_STEP; k++) {
        const next = this.#lines.next();
        if (next.done) {
          this.#done = true;
          break;
        }
        text += next.value;
      }
      this.#pending = text;
    }
    if (this.#pending !== "" && !this.#store(this.#pending)) return false;
    this.#pending = "";
    return !this.#done;
  }

  /** Writes text at the head of the ring; false when there is no room for it yet. */
  #store(text: string): boolean {
    const ring = this.#ring ??= new Uint8Array(PREFETCH_BYTES);
    const need = text.length * 3; // UTF-8 bytes, at most
    if (this.#used === 0) this.#open = this.#head = 0;
    const tail = this.#chunks.length > 0 ? this.#chunks[0].bytes.byteOffset : this.#open;
    if (tail < this.#head || this.#used === 0) {
      // Held bytes lie in [tail, head): room after head, else from the start.
      if (ring.length - this.#head < need) {
        if (tail <= need) return false;
        this.#close();
        this.#open = this.#head = 0;
      }
    } else if (tail - this.#head <= need) return false; // wrapped: room is [head, tail)
    const { written } = this.#encoder.encodeInto(
      text,
      ring.subarray(this.#head, this.#head + need),
    );
    this.#head += written;
    this.#used += written;
    if (this.#head - this.#open >= COPY_FLUSH_CHARS) this.#close();
    return true;
  }

  /** Ends the chunk being filled: it is ready to send. */
  #close(): void {
    if (this.#head === this.#open) return;
    const ring = this.#ring!;
    const text = ring.subarray(this.#open, this.#head);
    const packed = deflateRawSync(text, { level: PREFETCH_DEFLATE_LEVEL });
    if (packed.length < text.length) {
      ring.set(packed, this.#open);
      this.#used -= text.length - packed.length;
      this.#head = this.#open + packed.length;
    }
    this.#chunks.push({
      bytes: ring.subarray(this.#open, this.#head),
      packed: packed.length < text.length,
    });
    this.#open = this.#head;
  }

  /** True once every line is made (before {@link lines} is called). */
  get allMade(): boolean {
    return this.#done;
  }

  /** Waits for `work`, making lines in between its turns of the event loop. */
  async during<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    work.then(() => (settled = true), () => (settled = true));
    while (!settled && this.step()) await new Promise((resolve) => setImmediate(resolve));
    return await work;
  }

  /** Hands out the oldest chunk; its room is free once the caller comes back. */
  *#send(): Generator<Uint8Array> {
    const { bytes, packed } = this.#chunks[0];
    if (packed) {
      const text = inflateRawSync(bytes);
      yield text;
      this.#inflated += text.length;
      if (this.#inflated >= PREFETCH_COLLECT_BYTES) {
        this.#inflated = 0;
        collectGarbage();
      }
    } else yield bytes;
    this.#chunks.shift(); // sent, and so copied
    this.#used -= bytes.length;
  }

  /**
   * The lines made so far, as bytes; making more goes on meanwhile, in the
   * room they leave, for {@link lines}.
   */
  *made(): Generator<Uint8Array> {
    for (let n = this.#chunks.length; n > 0; n--) yield* this.#send();
  }

  /** Every line: those made ahead (as bytes), then the rest. */
  *lines(): Generator<string | Uint8Array> {
    this.#done = true; // no more making ahead
    this.#close();
    while (this.#chunks.length > 0) yield* this.#send();
    this.#ring = null;
    if (this.#pending !== "") yield this.#pending;
    this.#pending = "";
    for (let next = this.#lines.next(); !next.done; next = this.#lines.next()) yield next.value;
  }
}

/**
 * Orphans, before the foreign key is rebuilt: where the target declares the
 * key, rebuilding it finds them anyway; where it does not, this does.
 */
async function checkOrphansDirect(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
): Promise<void> {
  const ref = plan.spec.references;
  if (!ref || hasForeignKey(plan)) return;
  const parent = plans.find((p) => p.spec.name === ref.table);
  if (!parent) return;
  await checkOrphans(
    tx,
    [{ ...parent, keys: parent.target.qualified }],
    { ...plan, staging: plan.target.qualified },
    options,
    log,
  );
}

/** True if the target declares the foreign key of the table's declaration. */
function hasForeignKey(plan: TablePlan): boolean {
  const ref = plan.spec.references!;
  const references = new RegExp(`REFERENCES (\\S+\\.)?"?${ref.table}"?\\(`);
  return plan.target.constraints.some((c) =>
    c.type === "f" && c.columns?.join() === ref.columns.join() && references.test(c.definition) &&
    !c.definition.endsWith("NOT VALID")
  );
}

/**
 * A table's count and digest sum, from PostgreSQL's stored rows, against
 * SQLite's. PostgreSQL may share the scan among parallel workers (the
 * target is an ordinary table, and printing the payloads is the work), for
 * this query only: keys built later keep the server's own choice. Not with
 * `parallel` false: JavaScript is busy meanwhile and needs the other core.
 */
async function verifySum(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  expected: DigestSum,
  parallel = true,
): Promise<CountCheck> {
  if (parallel) await parallelScans(tx);
  const [{ rows, sum }] = await tx.unsafe(
    `SELECT count(*)::int AS rows, coalesce(sum(${DIGEST}), 0)::text AS sum
     FROM (${targetDigests(plan)}) t`,
  );
  if (parallel) await parallelScans(tx, false);
  if (rows !== expected.rows || BigInt.asIntN(64, BigInt(sum)) !== expected.value) {
    throw new Abandon(`digest sum of ${plan.spec.name}`);
  }
  const sqlite = source.tables[plan.spec.name].rows;
  return { table: plan.spec.name, sqlite, expected: sqlite, postgres: rows };
}

// ---------------------------------------------------------------------------
// Reruns: buckets of digests first, rows only where a bucket differs
// ---------------------------------------------------------------------------

/**
 * SQLite's side of a table on a rerun: its rows in buckets by key, each
 * bucket with its row count and the exact sum of its rows' digests (as the
 * signed high and low halves, summed apart), and each
 * row's bucket, rowid and digest: of a bucket that differs, the rows whose
 * digests the target lacks are read again.
 */
interface SourceBuckets {
  size: number;
  rows: number;
  /**
   * Per bucket, side by side: its row count, and the sums of its rows'
   * digests' high and low halves, both signed (see {@link BUCKET_ROWS}).
   */
  sums: Float64Array;
  rowids: Uint32Array | Float64Array;
  bucketOf: Int32Array;
  /** Each row's digest, its signed high half then its low half: see {@link matchDigests}. */
  digests: Int32Array;
}

/**
 * Rows a bucket may hold: below 2^21 rows of less than 2^32 each, a double
 * sums a half exactly, so both sides compare numbers, no BigInt (reading a
 * large table's buckets back made a BigInt or four per bucket, and 20 MB of
 * garbage). With four to sixteen rows a bucket, only a target with hundreds of
 * millions of rows more than SQLite could reach it; then the careful path.
 */
const BUCKET_ROWS = 2 ** 21;

/**
 * Buckets for a table: fewer make PostgreSQL's grouping cheaper (the medium
 * set's 300,000 snapshots in 2^17 buckets: 320–400 ms; in 2^15: 240–280)
 * and the bucket table shorter to read back, but each row of a differing
 * bucket is digested again (see scanBuckets). Where a row holds JSON, that
 * is printing it again (~25 µs a track), so about four rows a bucket; other
 * rows take well under a microsecond, so about sixteen. At most 2^18 buckets
 * (6 MB of counts and sums).
 */
function bucketsFor(plan: TablePlan, rows: number): number {
  const perBucket = plan.columns.some((c) => c.kind === "json") ? 4 : 16;
  return 2 ** Math.min(18, Math.max(8, Math.ceil(Math.log2(Math.max(1, rows / perBucket)))));
}

/**
 * A row's bucket in SQL, over the target row `t` (or over `hashes`, its
 * fields' hashes already computed): the key's fields' hashes, each shifted
 * left by its place and XORed, masked.
 */
function bucketSql(plan: TablePlan, size: number, hashes = fieldHashes(plan)): string {
  const parts = hashes.slice(0, plan.keyIndexes.length)
    .map((hash, place) => place === 0 ? hash : `(${hash} << ${place})`);
  return `((${parts.join(" # ")}) & ${size - 1})::int`;
}

/** The same in JavaScript, from a row just digested: see {@link RowDigest.endField}. */
const rowBucket = (digest: RowDigest, size: number) => digest.keyHash & (size - 1);

/**
 * Lets the queries just issued leave before a stretch of synchronous work:
 * postgres.js writes on the next turn of the event loop, and Deno's socket
 * (TLS or not) sends on the one after. Measured: one turn left a query
 * waiting for the whole stretch; two, none.
 */
async function onTheWire(): Promise<void> {
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Each row of a query as it arrives (postgres.js's forEach, which keeps no
 * rows). postgres.js rejects the query with an error the callback throws,
 * but goes on calling it for the rows after: those are skipped.
 */
async function eachRow(
  query: postgres.PendingQuery<postgres.Row[]>,
  take: (row: postgres.Row) => void,
): Promise<void> {
  let failed = false;
  await query.forEach((row) => {
    if (failed) return;
    try {
      take(row);
    } catch (error) {
      failed = true;
      throw error;
    }
  });
}

/**
 * The bytes of a text of hex digits (`encode(bytes, 'hex')`, whatever the
 * session's bytea_output): V8's Uint8Array.fromHex where the runtime has it
 * (a millisecond a megabyte), else Buffer's (as postgres.js reads a bytea,
 * ten times slower).
 */
const fromHex = (hex: string): Uint8Array => {
  const native = Uint8Array as unknown as { fromHex?: (hex: string) => Uint8Array };
  return native.fromHex ? native.fromHex(hex) : Buffer.from(hex, "hex");
};

/**
 * Buckets read back as bytes: each bucket its number, count, and sums of
 * high and low halves, as `int4send` and `int8send` write them, a range of
 * the bucket table's pages a row (each compared as it arrives). As text,
 * four numbers a bucket, JavaScript took as long to parse them as PostgreSQL
 * to print them (the medium set's 2^17 buckets: 150 ms in all; 100 ms as
 * bytes, before collecting their garbage). The bytes come as hex text (see
 * {@link fromHex}): PostgreSQL's binary COPY would send them
 * raw, but postgres.js leaves its socket paused after a large one, and the
 * next query waits forever. Ranges of pages (a TID range scan each), not of
 * bucket numbers (a scan of the whole table each) nor groups (twice
 * PostgreSQL's time): 256 pages hold about 35,000 buckets (850 kB, twice
 * that as hex); the last range is open.
 */
const BUCKET_RANGE_PAGES = 256;
/** Rows of the bucket table a page: (8192 - 24) / (56 + 4), exact for its row type. */
const BUCKETS_A_PAGE = 136;
const BUCKET_BYTES = 24;

/**
 * Their garbage (the hex, postgres.js's copies of it, the bytes: about 7
 * bytes a byte) stays in V8's heap until a full collection, which V8 starts
 * late: the large set's 1 % rerun peaked at 160 MiB without one. The CLI
 * collects every 3 MB of hex (about 12 ms each; five on the large set, the
 * last when all are read): 139 MiB, as when the sums came as text. Only
 * while the process holds more than BUCKET_COLLECT_RSS: below it (the
 * medium set's reruns stay under 120 MiB) the garbage has room.
 */
const BUCKET_COLLECT_CHARS = 3_000_000;
const BUCKET_COLLECT_RSS = 128 * 2 ** 20;
const collectIfLarge = () => {
  if (Deno.memoryUsage().rss > BUCKET_COLLECT_RSS) collectGarbage();
};

/**
 * PostgreSQL's side: the target's buckets, summed from its stored rows into
 * a temporary table (by parallel workers where the server allows; a cursor
 * would forbid them), read back in batches. Returns once the query is sent,
 * so that PostgreSQL sums while JavaScript reads SQLite.
 */
async function targetBuckets(tx: Tx, plan: TablePlan, size: number) {
  const table = `pg_temp.${q(`migrate_buckets_${plan.spec.name}`)}`;
  // Each field's hash once (OFFSET 0 keeps the planner from inlining the
  // key's twice), for the bucket and the digest.
  const hashes = fieldHashes(plan);
  const h = hashes.map((_, place) => `h.h${place}`);
  // The tracks' payloads that are JSON objects, counted on the way: where
  // nothing changes, the report needs no scan of its own.
  const json = payloadJson(plan);
  // The digest's halves summed apart, as JavaScript sums them, both as
  // signed int4: summed in an int8 (no numeric, as sum(int8) would be, nor
  // its cast), a sixth less time over 2^17 buckets.
  const summed = tx.unsafe(
    `CREATE TEMPORARY TABLE ${table} ON COMMIT DROP AS
     SELECT bucket, count(*)::int AS n, sum((d >> 32)::int4) AS high,
            sum(((d << 32) >> 32)::int4) AS low, count(*) FILTER (WHERE object)::int AS objects
     FROM (SELECT ${bucketSql(plan, size, h)} AS bucket, ${rowDigestSql(h)} AS d, h.object
           FROM (SELECT ${hashes.map((hash, place) => `${hash} AS h${place}`).join(", ")},
                        ${json ? isObject(json) : "false"} AS object
                 FROM ${plan.target.qualified} t OFFSET 0) h OFFSET 0) d
     GROUP BY 1`,
  ).execute();
  // Every bucket at once (see everyBucketAgrees), asked for right behind,
  // so it is ready when JavaScript is.
  // In bigint, not numeric (a quarter of the time over 2^18 buckets): each
  // sum split at 2^26 keeps every product within bigint (below 2^45 for
  // buckets under BUCKET_ROWS, checked after); sum(int8) adds in numeric.
  const split = (sum: string) =>
    [" >> 26", " & 67108863"].map((part, i) =>
      `coalesce(sum((bucket + 1)::int8 * (${sum}${part})), 0)::text AS ${sum}${i}`
    ).join(", ");
  const weighted = tx.unsafe(
    `SELECT coalesce(sum((bucket + 1)::int8 * n), 0)::text AS count, ${split("high")},
       ${split("low")}, coalesce(max(n), 0) AS largest,
       coalesce(sum(objects), 0)::int AS objects FROM ${table}`,
  ).execute();
  // Awaited by differingBuckets, unless reading SQLite abandons first.
  for (const query of [summed, weighted]) query.catch(() => {});
  await onTheWire();
  return { table, summed, weighted };
}

/** The tracks' payloads that are JSON objects, as {@link targetBuckets} counted them. */
async function countedObjects(
  theirs: Map<TablePlan, Awaited<ReturnType<typeof targetBuckets>>>,
): Promise<number | undefined> {
  const tracks = [...theirs.keys()].find((plan) => payloadJson(plan) !== null);
  if (!tracks) return undefined;
  const [{ objects }] = await theirs.get(tracks)!.weighted;
  return objects;
}

/** The buckets whose count or sums differ between the two sides. */
async function differingBuckets(
  tx: Tx,
  ours: SourceBuckets,
  theirs: Awaited<ReturnType<typeof targetBuckets>>,
): Promise<number[]> {
  await theirs.summed;
  if (await everyBucketAgrees(ours, theirs.weighted)) return [];
  const differ: number[] = [];
  const seen = new Uint8Array(ours.size);
  const sums = ours.sums;
  const ranges = Math.ceil(ours.size / (BUCKET_RANGE_PAGES * BUCKETS_A_PAGE));
  const pages = (range: number) => `'(${range * BUCKET_RANGE_PAGES},0)'::tid`;
  const rows = Array.from(
    { length: ranges },
    (_, range) =>
      `SELECT encode(string_agg(int4send(bucket) || int4send(n) || int8send(high) || int8send(low),
                              ''::bytea), 'hex') AS hex FROM ${theirs.table} WHERE ctid >= ${
        pages(range)
      }${range < ranges - 1 ? ` AND ctid < ${pages(range + 1)}` : ""}`,
  );
  // Exact as doubles: every sum is below 2^53 (see BUCKET_ROWS).
  const int64 = (view: DataView, at: number) =>
    view.getInt32(at) * 2 ** 32 + view.getUint32(at + 4);
  let received = 0;
  const collect = (atLeast: number) => {
    if (received < atLeast) return;
    collectIfLarge();
    received = 0;
  };
  // Each range as it arrives (see eachRow), while PostgreSQL goes on to the
  // next: a cursor's fetch waited for the row before, and PostgreSQL sat idle
  // while JavaScript compared it (the medium set's snapshots in 2^17
  // buckets: 100 ms, 80 this way).
  await eachRow(tx.unsafe(rows.join(" UNION ALL ")), ({ hex }) => {
    if (hex === null) return; // no rows in the range
    collect(BUCKET_COLLECT_CHARS);
    received += hex.length;
    const bytes = fromHex(hex);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at < view.byteLength; at += BUCKET_BYTES) {
      const bucket = view.getInt32(at);
      seen[bucket] = 1;
      const s = 3 * bucket;
      if (
        view.getInt32(at + 4) !== sums[s] || int64(view, at + 8) !== sums[s + 1] ||
        int64(view, at + 16) !== sums[s + 2]
      ) differ.push(bucket);
    }
  });
  // And what is left, before staging makes more.
  collect(1);
  for (let b = 0; b < ours.size; b++) if (!seen[b] && sums[3 * b] > 0) differ.push(b);
  return differ.sort((a, b) => a - b);
}

/**
 * Every bucket at once, before reading any back: the sums over buckets of
 * (bucket + 1) × its count, × its high halves' sum and × its low halves'
 * sum, exact on both sides. Where every bucket agrees they do; where one
 * differs, its sums do by the digests of the rows that differ, and the
 * weighted totals could still agree only by a 64-bit coincidence. Where
 * nothing changed, no bucket is read back.
 */
async function everyBucketAgrees(
  ours: SourceBuckets,
  weighted: Awaited<ReturnType<typeof targetBuckets>>["weighted"],
): Promise<boolean> {
  const [theirs] = await weighted;
  let largest = 0;
  for (let b = 0; b < ours.size; b++) largest = Math.max(largest, ours.sums[3 * b]);
  if (Math.max(largest, theirs.largest) >= BUCKET_ROWS) throw new Abandon("a bucket too large");
  const whole = (name: string) => (BigInt(theirs[`${name}0`]) << 26n) + BigInt(theirs[`${name}1`]);
  return [BigInt(theirs.count), whole("high"), whole("low")].every((total, part) =>
    total === weightedSum(ours, part)
  );
}

/**
 * The sum over buckets of (bucket + 1) × one of their sums (0: count,
 * 1: high halves, 2: low halves), exact: each sum (below 2^53, see
 * {@link BUCKET_ROWS}) split at 2^26, and the products summed as doubles
 * for 256 buckets at a time (below 2^53 with at most 2^18 buckets), then
 * as a BigInt: a thousand BigInts instead of a million.
 */
function weightedSum(ours: SourceBuckets, part: number): bigint {
  const SPLIT = 2 ** 26;
  let total = 0n;
  for (let start = 0; start < ours.size; start += 256) {
    let upper = 0;
    let lower = 0;
    for (let b = start; b < Math.min(start + 256, ours.size); b++) {
      const value = ours.sums[3 * b + part];
      const high = Math.floor(value / SPLIT);
      upper += (b + 1) * high;
      lower += (b + 1) * (value - high * SPLIT);
    }
    total += (BigInt(upper) << 26n) + BigInt(lower);
  }
  return total;
}

/**
 * Reads, validates and digests every row of a table, into buckets; the
 * first problem abandons the fast path. Nothing is sent to PostgreSQL.
 */
function sourceBuckets(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
): SourceBuckets {
  const total = source.tables[plan.spec.name].rows;
  const size = bucketsFor(plan, total);
  const [[maxRowid]] = prepareArrays(source.db, `SELECT max(rowid) FROM ${q(plan.spec.name)}`)
    .all() as [[bigint | null]];
  const buckets: SourceBuckets = {
    size,
    rows: 0,
    sums: new Float64Array(3 * size),
    rowids: (maxRowid ?? 0n) < 2n ** 32n ? new Uint32Array(total) : new Float64Array(total),
    bucketOf: new Int32Array(total),
    digests: new Int32Array(2 * total),
  };
  const progress = (done: number) => options.onProgress?.({ table: plan.spec.name, done, total });
  // No generator between reading and summing, not even readRows: on a
  // large table each row's pass through one cost a tenth of the whole.
  const digest = new RowDigest();
  const { sums, rowids, bucketOf, digests } = buckets;
  let rows = 0;
  for (const page of readPages(source, plan, options.batchSize)) {
    for (const row of page) {
      const clean = validateRow(source, plan, row, options, log.problems, log.policies);
      if (!clean) throw new Abandon(`a row of ${plan.spec.name} refused`);
      rowDigest(digest, plan, clean);
      const bucket = rowBucket(digest, size);
      sums[3 * bucket]++;
      sums[3 * bucket + 1] += digest.high | 0;
      sums[3 * bucket + 2] += digest.low | 0;
      rowids[rows] = Number(row[row.length - 1]);
      digests[2 * rows] = digest.high;
      digests[2 * rows + 1] = digest.low;
      bucketOf[rows++] = bucket;
      if ((rows & 1023) === 0) progress(rows);
    }
  }
  buckets.rows = rows;
  progress(rows);
  return buckets;
}

/**
 * A rerun, when every target table has rows. SQLite's rows are read once and
 * summed into buckets by key, and PostgreSQL sums its stored rows the same
 * way; where every bucket agrees, nothing changed and nothing more is read,
 * sent or written. Otherwise PostgreSQL digests its rows of the differing
 * buckets (four to sixteen a bucket), and only the source rows whose digests it
 * lacks are staged and compared, and only their changes are written.
 * After writing, every staged row must be in the target with its source's
 * digest, and each table hold as many rows as SQLite: the other buckets
 * were equal and no write touched them (their keys are elsewhere, and the
 * tables are locked), so no other row can be missing or extra.
 *
 * Like {@link loadDirect}, it hands anything that needs explaining (a
 * problem in SQLite, rows only PostgreSQL has without --prune, an orphan,
 * a refusal, a bucket that still differs, verify-only finding a difference)
 * to the careful path, which starts from the beginning.
 */
async function rerunByBuckets(
  tx: Tx,
  source: Source,
  plans: TablePlan[],
  options: Options,
  step: (line: string) => void,
): Promise<FastResult | null> {
  for (const plan of plans) {
    if (!source.tables[plan.spec.name].pageable || !await hasRows(tx, plan)) return null;
    if (plan.target.constraints.some((c) => c.definition.endsWith("NOT VALID"))) return null;
  }
  return await fastPath(tx, step, async (sp) => {
    const log = abandoningLog(plans);
    step("comparing SQLite with PostgreSQL, bucket by bucket");
    const sources = new Map<TablePlan, SourceBuckets>();
    const differ = new Map<TablePlan, number[]>();
    const written = new Map<TablePlan, Written>(
      plans.map((p) => [p, { inserted: 0, updated: 0, pruned: 0, seconds: 0 }]),
    );
    for (const plan of plans) {
      if (duplicateSourceKeys(source, plan).length > 0) throw new Abandon("duplicate keys");
    }
    // PostgreSQL sums every table's rows, one after the other, while
    // JavaScript reads SQLite's: all the queries go out before the reading,
    // so neither side waits for the other between tables. Without parallel
    // workers: on a small machine they take the core JavaScript needs.
    const theirs = new Map<TablePlan, Awaited<ReturnType<typeof targetBuckets>>>();
    for (const plan of plans) {
      theirs.set(
        plan,
        await targetBuckets(sp, plan, bucketsFor(plan, source.tables[plan.spec.name].rows)),
      );
    }
    for (const plan of plans) {
      const started = performance.now();
      sources.set(plan, sourceBuckets(source, plan, options, log));
      written.get(plan)!.seconds = (performance.now() - started) / 1000;
    }
    for (const plan of plans) {
      const started = performance.now();
      differ.set(plan, await differingBuckets(sp, sources.get(plan)!, theirs.get(plan)!));
      written.get(plan)!.seconds += (performance.now() - started) / 1000;
    }
    // From here on JavaScript mostly waits: workers may help PostgreSQL.
    await parallelScans(sp);
    const changed = plans.filter((p) => differ.get(p)!.length > 0);
    if (changed.length === 0) {
      for (const plan of plans) await orphansInTarget(sp, plans, plan);
    } else if (options.mode === "verify-only") {
      throw new Abandon("verify-only found differences");
    }
    const extras = new Map<TablePlan, string>();
    /** How the target's count of JSON objects changes with the writes. */
    let objects = 0;
    // PostgreSQL digests its rows of the differing buckets, and only the
    // rows whose digests the other side lacks are read again and staged
    // whole: where 1 % changed, a quarter of those buckets' tracks and a
    // fifteenth of their snapshots. Each table's comparison goes out as one
    // batch of statements, no round trip between them.
    for (const plan of changed) {
      const started = performance.now();
      step(`staging the ${plan.spec.name} rows of ${differ.get(plan)!.length} differing bucket(s)`);
      await createStaging(sp, plan, false);
      await scanBuckets(sp, plan, sources.get(plan)!, differ.get(plan)!);
      const { rowids, unmatched } = await matchDigests(
        sp,
        plan,
        sources.get(plan)!,
        differ.get(plan)!,
      );
      // The digests' garbage, before staging makes more (see
      // BUCKET_COLLECT_RSS): the large set's 1 % rerun peaked 4 MiB lower.
      collectIfLarge();
      await copyInto(sp, rerunTable(plan, "unmatched"), unmatched, () => {});
      await copyInto(
        sp,
        `${plan.staging} (${columnList(plan)}, ${DIGEST})`,
        rowLines(source, plan, options, log, rowids),
        () => {},
      );
      const staged = compareBuckets(sp, plan);
      extras.set(plan, staged.extra);
      objects += await staged.compared;
      written.get(plan)!.seconds += (performance.now() - started) / 1000;
    }
    for (const plan of plans) await orphansAfterChanges(sp, plans, plan, extras);
    for (const plan of [...changed].reverse()) {
      const [{ n }] = await sp.unsafe(`SELECT count(*)::int AS n FROM ${extras.get(plan)}`);
      if (n === 0) continue;
      if (!options.prune) throw new Abandon(`rows only in PostgreSQL in ${plan.spec.name}`);
      step(`pruning ${plan.spec.name} rows that SQLite does not have`);
      written.get(plan)!.pruned = await pruneRows(
        sp,
        plans,
        plan,
        `DELETE FROM ${plan.target.qualified} t USING ${extras.get(plan)} e
         WHERE ${keyMatch(plan, "e", "t")}`,
        step,
      );
    }
    for (const plan of changed) {
      const started = performance.now();
      step(`writing ${plan.spec.name}`);
      const entry = written.get(plan)!;
      entry.updated = (await sp.unsafe(updateSql(plan))).count;
      entry.inserted = (await sp.unsafe(insertSql(plan))).count;
      entry.seconds += (performance.now() - started) / 1000;
    }
    // Rows that stay may be orphans too where no foreign key rules them out.
    if (changed.length > 0) { for (const plan of plans) await orphansInTarget(sp, plans, plan); }
    step("verifying every row against its source");
    const counts: CountCheck[] = [];
    const triggered = plans.some((p) => p.target.triggers.length > 0);
    for (const plan of plans) {
      const ours = sources.get(plan)!;
      if (differ.get(plan)!.length > 0) await verifyWritten(sp, plan);
      if (triggered && changed.length > 0) await noOtherWrites(sp, plan, written.get(plan)!);
      // Where nothing was written, PostgreSQL counted its rows bucket by
      // bucket, and every count agreed. After writing, count: more than our
      // statements can write (a trigger on a partition, a foreign key's
      // ON DELETE CASCADE from another table), and their counts would not say.
      const [{ n }] = changed.length === 0
        ? [{ n: ours.rows }]
        : await sp.unsafe(`SELECT count(*)::int AS n FROM ${plan.target.qualified}`);
      if (n !== ours.rows) throw new Abandon(`row count of ${plan.spec.name}`);
      const sqlite = source.tables[plan.spec.name].rows;
      counts.push({ table: plan.spec.name, sqlite, expected: sqlite, postgres: n });
    }
    // Counted while summing buckets, and changed as the writes said; a
    // trigger could change more: count again.
    const counted = triggered && changed.length > 0 ? undefined : await countedObjects(theirs);
    const { jsonObjects, sample } = await payloadChecks(
      sp,
      plans,
      counted === undefined ? undefined : counted + objects,
    );
    return {
      written,
      verification: { ok: true, counts, jsonObjects, sample, mismatches: [], rechecked: 0 },
    };
  });
}

/**
 * After a rerun's writes, every row it wrote must be in the target with its
 * source's digest. Each is looked up by key (LATERAL: the planner would
 * otherwise hash every target row to join a few), and the digest computed
 * for those rows only. The other rows compared equal in this transaction,
 * under lock, and nothing wrote them (see {@link noOtherWrites}).
 */
async function verifyWritten(tx: Tx, plan: TablePlan): Promise<void> {
  const [{ written, equal }] = await tx.unsafe(
    `SELECT count(*)::int AS written,
       (count(*) FILTER (WHERE t.${DIGEST} = c.${DIGEST}))::int AS equal
     FROM ${plan.changes} c LEFT JOIN LATERAL (
       SELECT ${digestSql(plan)} AS ${DIGEST} FROM ${plan.target.qualified} t
       WHERE ${keyMatch(plan, "c", "t")}) t ON true
     WHERE NOT c.migrate_equal`,
  );
  if (equal !== written) throw new Abandon(`${plan.spec.name} still differs after writing`);
}

/**
 * A trigger on a table written may write any row of any table: then the
 * rows this transaction wrote (its own or its subtransactions' xids, which
 * age() puts at 0 or below) must be exactly those it meant to write, or the
 * careful path compares everything. Deleted rows are the row counts' part.
 */
async function noOtherWrites(tx: Tx, plan: TablePlan, written: Written): Promise<void> {
  const [{ n }] = await tx.unsafe(
    `SELECT count(*)::int AS n FROM ${plan.target.qualified} t WHERE age(t.xmin) <= 0`,
  );
  if (n !== written.inserted + written.updated) {
    throw new Abandon(`a trigger wrote other rows of ${plan.spec.name}`);
  }
}

/** A changed table's temporary tables, named by what they hold. */
const rerunTable = (plan: TablePlan, what: string) =>
  `pg_temp.${q(`migrate_${what}_${plan.spec.name}`)}`;

/**
 * The target's rows of the differing buckets (a scan hashing every key), into
 * a table of their keys and digests; and a table for those digests that
 * SQLite's rows of the buckets lack (see {@link matchDigests}).
 */
async function scanBuckets(tx: Tx, plan: TablePlan, ours: SourceBuckets, differ: number[]) {
  const json = payloadJson(plan);
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${rerunTable(plan, "target")} ON COMMIT DROP AS
     SELECT ${plan.spec.key.map((k) => `t.${q(k)}`).join(", ")}, ${digestSql(plan)} AS ${DIGEST},
            ${json ? isObject(json) : "false"} AS object
     FROM ${plan.target.qualified} t
     WHERE ${bucketSql(plan, ours.size)} = ANY('{${differ.join(",")}}'::int[])`,
  );
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${rerunTable(plan, "unmatched")} (high bigint, low bigint)
     ON COMMIT DROP`,
  );
}

/**
 * Sends statements at once: PostgreSQL runs them in order, with no round
 * trip between them. Settles with their results, or with the first one's
 * failure.
 */
function queued(tx: Tx, statements: string[]): Promise<Record<string, unknown>[][]> {
  const results = statements.map((text) => tx.unsafe(text).execute());
  for (const result of results) result.catch(() => {});
  return Promise.all(results);
}

/**
 * Digests read back as bytes (`int8send`, as hex: see {@link fromHex}), a
 * sixteenth of them a row (by their low bits), each taken in as it arrives:
 * a few MB at most however many buckets differ.
 */
const DIGEST_CHUNKS = 16;

/** Where a digest's halves lie in an Int32Array that a BigInt64Array views too. */
const HIGH = LITTLE_ENDIAN ? 1 : 0;
const LOW = 1 - HIGH;

/**
 * Matches the digests of the target's rows of the differing buckets with
 * those of SQLite's rows of the same buckets, as multisets: a source row
 * whose digest the target has (the key is part of it) is unchanged, as the
 * bucket sums would have said of a bucket of it alone. Returns the rowids of
 * the other source rows, to stage, and as COPY lines (high and low halves)
 * the target's digests that no source row matched: rows that changed or only
 * PostgreSQL has. The target's digests are sorted as 64-bit integers through
 * a BigInt64Array over their halves, and each source digest looked up by
 * bisection: no BigInt, no object per digest.
 */
async function matchDigests(
  tx: Tx,
  plan: TablePlan,
  ours: SourceBuckets,
  differ: number[],
): Promise<{ rowids: number[]; unmatched: string[] }> {
  let theirs = new Int32Array(1 << 12);
  let n = 0;
  await eachRow(
    tx.unsafe(
      `SELECT encode(string_agg(int8send(${DIGEST}), ''::bytea), 'hex') AS hex
     FROM ${rerunTable(plan, "target")} GROUP BY ${DIGEST} & ${DIGEST_CHUNKS - 1}`,
    ),
    ({ hex }) => {
      const bytes = fromHex(hex as string);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const count = bytes.length / 8;
      if (2 * (n + count) > theirs.length) {
        const bigger = new Int32Array(Math.max(2 * theirs.length, 2 * (n + count)));
        bigger.set(theirs);
        theirs = bigger;
      }
      for (let at = 0; at < bytes.length; at += 8, n++) {
        theirs[2 * n + HIGH] = view.getInt32(at);
        theirs[2 * n + LOW] = view.getInt32(at + 4);
      }
    },
  );
  new BigInt64Array(theirs.buffer, 0, n).sort();
  /** Whether target digest k is below (high, low) (low unsigned). */
  const below = (k: number, high: number, low: number) =>
    theirs[2 * k + HIGH] < high ||
    (theirs[2 * k + HIGH] === high && theirs[2 * k + LOW] >>> 0 < low);
  const equal = (k: number, high: number, low: number) =>
    theirs[2 * k + HIGH] === high && theirs[2 * k + LOW] >>> 0 === low;
  const matched = new Uint8Array(n);
  const wanted = new Uint8Array(ours.size);
  for (const bucket of differ) wanted[bucket] = 1;
  const rowids: number[] = [];
  const { digests, bucketOf } = ours;
  for (let r = 0; r < ours.rows; r++) {
    if (!wanted[bucketOf[r]]) continue;
    const high = digests[2 * r];
    const low = digests[2 * r + 1] >>> 0;
    let first = 0;
    for (let last = n; first < last;) {
      const middle = (first + last) >>> 1;
      if (below(middle, high, low)) first = middle + 1;
      else last = middle;
    }
    while (first < n && matched[first] && equal(first, high, low)) first++;
    if (first < n && equal(first, high, low)) matched[first] = 1;
    else rowids.push(ours.rowids[r]);
  }
  const unmatched: string[] = [];
  for (let k = 0; k < n; k++) {
    if (!matched[k]) unmatched.push(`${theirs[2 * k + HIGH]}\t${theirs[2 * k + LOW] >>> 0}\n`);
  }
  return { rowids, unmatched };
}

/**
 * The COPY lines of source rows read again by rowid, a page a query
 * (--batch-size, as readRows pages), not one.
 */
function* rowLines(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  rowids: number[],
): Generator<string> {
  const lookup = prepareArrays(
    source.db,
    `SELECT ${sourceColumns(source, plan)} FROM ${q(plan.spec.name)}
     WHERE rowid IN (SELECT value FROM json_each(?))`,
  );
  const digest = new RowDigest();
  for (let at = 0; at < rowids.length; at += options.batchSize) {
    const batch = rowids.slice(at, at + options.batchSize);
    const rows = lookup.all(JSON.stringify(batch));
    if (rows.length !== batch.length) throw new Abandon(`${plan.spec.name} changed while reading`);
    for (const row of rows) {
      const clean = validateRow(source, plan, row, options, log.problems, log.policies);
      if (!clean) throw new Abandon(`${plan.spec.name} changed while reading`);
      yield copyLine([...clean, rowDigest(digest, plan, clean).value]);
    }
  }
}

/**
 * Sends at once the comparison of a table's staged rows with the
 * target's rows of the same buckets (see {@link scanBuckets}), as the
 * careful path's comparison does: `plan.changes` holds what to write,
 * `extra` the keys in those buckets that only PostgreSQL has. `compared`
 * settles with how the target's count of JSON objects changes once written.
 */
function compareBuckets(tx: Tx, plan: TablePlan): { extra: string; compared: Promise<number> } {
  const theirs = rerunTable(plan, "target");
  const keys = plan.spec.key.map((k) => `t.${q(k)}`).join(", ");
  const json = payloadJson(plan);
  const k = q(plan.spec.key[0]);
  plan.changes = rerunTable(plan, "changes");
  const extra = rerunTable(plan, "extra");
  const unmatched = rerunTable(plan, "unmatched");
  const compared = queued(tx, [
    ...analyzeSql(plan, [plan.staging, theirs]),
    `CREATE TEMPORARY TABLE ${plan.changes} ON COMMIT DROP AS
     SELECT s.*, t.${k} IS NULL AS migrate_missing, false AS migrate_equal
     FROM ${plan.staging} s LEFT JOIN ${theirs} t ON ${keyMatch(plan, "s", "t")}
     WHERE t.${k} IS NULL OR t.${DIGEST} <> s.${DIGEST}`,
    // Equal by value after all (1.0 stored as 1.00): nothing to write.
    `UPDATE ${plan.changes} c SET migrate_equal = true
     FROM ${plan.target.qualified} t
     WHERE ${keyMatch(plan, "c", "t")} AND NOT c.migrate_missing
       AND NOT (${distinct(plan.columns, "c", "t")})`,
    `ANALYZE ${unmatched}`,
    `CREATE TEMPORARY TABLE ${extra} ON COMMIT DROP AS
     SELECT ${keys} FROM ${theirs} t
     WHERE t.${DIGEST} IN (SELECT (high << 32) | low FROM ${unmatched})
       AND NOT EXISTS (SELECT FROM ${plan.staging} s WHERE ${keyMatch(plan, "s", "t")})`,
    `ANALYZE ${plan.changes}`,
    `ANALYZE ${extra}`,
    // Once written, the staged rows stand where the target's rows whose
    // digests no source row matched stood (changed ones replaced, extra ones
    // pruned; rows equal by value count on both sides): the change in its
    // count of JSON objects, for the report.
    json
      ? `SELECT (SELECT count(*) FROM ${plan.staging} t WHERE ${isObject(json)})
              - (SELECT count(*) FROM ${theirs} t WHERE object
                   AND t.${DIGEST} IN (SELECT (high << 32) | low FROM ${unmatched})) AS objects`
      : "SELECT 0 AS objects",
  ]).then((results) => Number(results.at(-1)![0].objects));
  return { extra, compared };
}

/**
 * Orphans in the target: where nothing changed, or after the changes, it
 * holds exactly SQLite's rows, so its declared foreign key rules them out;
 * without one, look.
 */
async function orphansInTarget(tx: Tx, plans: TablePlan[], plan: TablePlan): Promise<void> {
  const ref = plan.spec.references;
  const parent = plans.find((p) => p.spec.name === ref?.table);
  if (!ref || !parent || hasForeignKey(plan)) return;
  // count(*), not LIMIT 1: see orphansAfterChanges.
  const [{ n }] = await tx.unsafe(
    `SELECT count(*)::int AS n FROM ${plan.target.qualified} s WHERE NOT EXISTS (
       SELECT FROM ${parent.target.qualified} p WHERE ${referenceMatch(ref, "p", "s")})`,
  );
  if (n > 0) throw new Abandon(`orphans in ${plan.spec.name}`);
}

/**
 * Orphans after the changes: a staged row whose parent is neither kept nor
 * staged, or a row that stays while its parent is pruned.
 */
async function orphansAfterChanges(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  extras: Map<TablePlan, string>,
): Promise<void> {
  const ref = plan.spec.references;
  const parent = plans.find((p) => p.spec.name === ref?.table);
  if (!ref || !parent) return;
  const parentExtra = extras.get(parent);
  if (!parentExtra && !extras.has(plan)) return;
  // count(*), not LIMIT 1: with a LIMIT the planner bets on finding a row
  // early and scans the whole target for it, while there is usually none.
  const match = (p: string) => referenceMatch(ref, p, "s");
  if (extras.has(plan)) {
    // A row to write needs its parent in the target or staged (one set of
    // keys, so the planner hashes it once rather than looping over them),
    // and not pruned (pruned parents are never staged). Staged rows equal to
    // the target's are rows that stay: the check below covers them.
    const columns = ref.targetColumns.map(q).join(", ");
    const parents = parentExtra
      ? `(SELECT ${columns} FROM ${parent.target.qualified}
          UNION ALL SELECT ${columns} FROM ${parent.staging})`
      : parent.target.qualified;
    const [{ n }] = await tx.unsafe(
      `SELECT (SELECT count(*) FROM ${plan.changes} s WHERE NOT s.migrate_equal
                 AND NOT EXISTS (SELECT FROM ${parents} p WHERE ${match("p")}))${
        parentExtra
          ? ` + (SELECT count(*) FROM ${plan.changes} s WHERE NOT s.migrate_equal
                   AND EXISTS (SELECT FROM ${parentExtra} p WHERE ${match("p")}))`
          : ""
      } AS n`,
    );
    if (Number(n) > 0) throw new Abandon(`orphans in ${plan.spec.name}`);
  }
  if (!parentExtra) return;
  // A row that stays needs its parent to stay. Counted from the few pruned
  // parents, so that the planner looks their children up by key instead of
  // scanning every child to join a few.
  const pruned = extras.has(plan)
    ? `AND NOT EXISTS (SELECT FROM ${extras.get(plan)} x WHERE ${keyMatch(plan, "x", "s")})`
    : "";
  const [{ n }] = await tx.unsafe(
    `SELECT count(*)::int AS n FROM ${parentExtra} p WHERE EXISTS (
       SELECT FROM ${plan.target.qualified} s WHERE ${match("p")} ${pruned})`,
  );
  if (n > 0) throw new Abandon(`rows of ${plan.spec.name} would lose their ${parent.spec.name}`);
}

function referenceMatch(ref: Reference, parent: string, child: string): string {
  return ref.columns.map((c, i) => `${parent}.${q(ref.targetColumns[i])} = ${child}.${q(c)}`)
    .join(" AND ");
}

/** The steps of a run, each returning what the next needs. */
async function runInTransaction(
  tx: Tx,
  source: Source,
  options: Options,
  started: number,
  sink: ProblemSink | undefined,
): Promise<Report> {
  const step = options.onStep ?? (() => {});
  await lockTarget(tx, options, step);
  await prepareTarget(tx, options);
  const plans = await planTables(tx, source, options);
  for (const plan of plans) step(describePlan(plan, source));
  await lockTables(tx, plans);

  const fast = options.careful ? null : await loadDirect(tx, source, plans, options, step) ??
    await rerunByBuckets(tx, source, plans, options, step);
  if (fast) {
    await syncSequences(tx, plans, fast.written, options);
    const rows = new Map(plans.map((p) => [p, source.tables[p.spec.name].rows]));
    const none = new Map(plans.map((p) => [p, 0]));
    return {
      ok: true,
      mode: options.mode,
      committed: false,
      sqlitePath: options.sqlitePath,
      target: describeConnection(options.connection!),
      schema: options.schema,
      columns: plans.map(columnReport),
      tables: plans.map((p) => tableReport(p, source, rows, none, fast.written.get(p), 0)),
      verification: fast.verification,
      policies: [],
      seconds: (performance.now() - started) / 1000,
    };
  }

  step("reading SQLite and staging it in PostgreSQL");
  const stageStarted = performance.now();
  const { staged, skipped, policies } = await stageSource(tx, source, plans, options, sink);
  const stageSeconds = (performance.now() - stageStarted) / 1000;

  step("comparing with PostgreSQL");
  const diffs = new Map<TablePlan, Diff>();
  for (const plan of plans) diffs.set(plan, await diffBeforeWriting(tx, plan, staged.get(plan)!));
  await refuseExtraRows(tx, plans, diffs, options, sink);

  const written = options.mode === "verify-only" || [...diffs.values()].every(isClean)
    ? new Map<TablePlan, Written>()
    : await writeChanges(tx, plans, diffs, staged, options.prune, step);
  step("verifying every row against its source");
  const verification = await verifyTarget(tx, source, plans, skipped, options);
  const report: Report = {
    ok: verification.ok,
    mode: options.mode,
    committed: false,
    sqlitePath: options.sqlitePath,
    target: describeConnection(options.connection!),
    schema: options.schema,
    columns: plans.map(columnReport),
    tables: plans.map((plan) =>
      tableReport(plan, source, staged, skipped, written.get(plan), stageSeconds)
    ),
    verification,
    policies: policies.groups,
    seconds: (performance.now() - started) / 1000,
  };
  if (!verification.ok && options.mode !== "verify-only") {
    throw new MigrationError(
      "verification",
      "verification failed: PostgreSQL does not match SQLite; the transaction was rolled back",
      PROBLEM_KINDS["content-mismatch"].hint,
      verification.mismatches,
      report,
    );
  }
  await syncSequences(tx, plans, written, options);
  return report;
}

/** Rows only in PostgreSQL stop the run, unless --prune deletes them (or nothing is written). */
async function refuseExtraRows(
  tx: Tx,
  plans: TablePlan[],
  diffs: Map<TablePlan, Diff>,
  options: Options,
  sink: ProblemSink | undefined,
): Promise<void> {
  const extra = [...diffs.values()].some((d) => d.extra > 0);
  if (!extra || options.prune || options.mode === "verify-only") return;
  const extras = new ProblemLog(sink && ((p) => sink(p, "refused")));
  for (const plan of plans) await extraExamples(tx, plan, extras);
  throw new MigrationError(
    "data",
    "PostgreSQL holds rows that SQLite does not have; nothing was written",
    PROBLEM_KINDS["extra-row"].hint,
    extras.groups,
  );
}

/** What was written to one table. */
interface Written {
  inserted: number;
  updated: number;
  pruned: number;
  seconds: number;
}

/** Prunes (children first), then updates and inserts (parents first). */
async function writeChanges(
  tx: Tx,
  plans: TablePlan[],
  diffs: Map<TablePlan, Diff>,
  staged: Map<TablePlan, number>,
  prune: boolean,
  step: (line: string) => void,
): Promise<Map<TablePlan, Written>> {
  const written = new Map(
    plans.map((plan) => [plan, { inserted: 0, updated: 0, pruned: 0, seconds: 0 }]),
  );
  for (const plan of [...plans].reverse()) {
    if (!prune || diffs.get(plan)!.extra === 0) continue;
    step(`pruning ${plan.spec.name} rows that SQLite does not have`);
    written.get(plan)!.pruned = await pruneRows(tx, plans, plan, pruneSql(plan), step);
  }
  for (const plan of plans) {
    const diff = diffs.get(plan)!;
    if (diff.missing + diff.differ === 0) continue;
    const tableStarted = performance.now();
    step(`writing ${plan.spec.name}`);
    const { inserted, updated } = await writeTable(tx, plan, diff, staged.get(plan)!, step);
    Object.assign(written.get(plan)!, {
      inserted,
      updated,
      seconds: (performance.now() - tableStarted) / 1000,
    });
  }
  return written;
}

function columnReport(plan: TablePlan): ColumnReport {
  return {
    table: plan.spec.name,
    migrated: plan.columns.map((c) => c.name),
    filledByPostgres: plan.filledByPostgres,
    ignored: plan.ignored,
    target: {
      indexes: plan.target.indexes.length,
      constraints: plan.target.constraints.length,
      triggers: plan.target.triggers,
    },
  };
}

function tableReport(
  plan: TablePlan,
  source: Source,
  staged: Map<TablePlan, number>,
  skipped: Map<TablePlan, number>,
  written: Written | undefined,
  stageSeconds: number,
): TableReport {
  const { inserted = 0, updated = 0, pruned = 0, seconds = 0 } = written ?? {};
  return {
    table: plan.spec.name,
    read: source.tables[plan.spec.name].rows,
    inserted,
    updated,
    unchanged: staged.get(plan)! - inserted - updated,
    skipped: skipped.get(plan)!,
    pruned,
    seconds: stageSeconds + seconds,
  };
}
/** While waiting for another run, say so this often. */
const LOCK_WAIT_REPORT_SECONDS = 5;
const LOCK_NOT_AVAILABLE = "55P03";

/**
 * One migration per target at a time: a transaction-level advisory lock is
 * released by COMMIT, ROLLBACK or a lost connection, so it cannot leak.
 * The wait is cut into slices (lock_timeout in a savepoint) to report it
 * every few seconds and to give up after --lock-timeout.
 */
async function lockTarget(tx: Tx, options: Options, step: (line: string) => void): Promise<void> {
  const { schema, lockTimeout } = options;
  const lockName = `migrate.ts:${schema}`;
  const [{ locked }] = await tx`SELECT pg_try_advisory_xact_lock(hashtext(${lockName})) AS locked`;
  if (locked) return;
  step(`another migration into schema ${schema} is running; waiting for it to finish`);
  const started = performance.now();
  while (true) {
    const waited = (performance.now() - started) / 1000;
    const left = lockTimeout === undefined ? Infinity : lockTimeout - waited;
    if (left <= 0) {
      throw new MigrationError(
        "config",
        `gave up after waiting ${lockTimeout} s for another migration into schema ${schema}; nothing was written`,
        "let the other run finish, or raise --lock-timeout (without it the run waits as long as it takes)",
      );
    }
    const slice = Math.ceil(Math.min(LOCK_WAIT_REPORT_SECONDS, left) * 1000);
    try {
      await tx.savepoint(async (sp) => {
        const [{ previous }] = await sp`
          SELECT current_setting('lock_timeout') AS previous,
                 set_config('lock_timeout', ${`${slice}ms`}, true)`;
        await sp`SELECT pg_advisory_xact_lock(hashtext(${lockName}))`;
        await sp`SELECT set_config('lock_timeout', ${previous}, true)`;
      });
      return;
    } catch (error) {
      if ((error as { code?: string })?.code !== LOCK_NOT_AVAILABLE) throw error;
    }
    if (left > slice / 1000) {
      step(
        `still waiting for the other migration into schema ${schema} (${
          Math.round((performance.now() - started) / 1000)
        } s)`,
      );
    }
  }
}

async function prepareTarget(tx: Tx, options: Options): Promise<void> {
  if (options.createSchema) {
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${q(options.schema)}`);
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
  // Type names and constraint expressions from the catalog print relative to
  // the search path: with the target schema on it, they resolve as written.
  await tx.unsafe(`SET LOCAL search_path TO ${q(options.schema)}`);
  // The diff and the key-ordered insert sort and hash whole tables; with the
  // default 4 MB they spill to disk. This is the server's memory, for this
  // transaction only; index builds after a bulk load use the maintenance one.
  await tx.unsafe(`SET LOCAL work_mem = '${WORK_MEM}'`);
  await tx.unsafe(`SET LOCAL maintenance_work_mem = '${WORK_MEM}'`);
  // Payloads are compressed with lz4 where the server has it, in staging and
  // in target columns that leave the method to the server's default: the
  // same JSONB, written about twice as fast as with pglz and read faster.
  await tx.unsafe(`SELECT set_config('default_toast_compression', 'lz4', true)
    FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)`);
  // SQLite's CURRENT_TIMESTAMP and datetime() write UTC without an offset.
  await tx.unsafe(`SET LOCAL TimeZone = 'UTC'`);
  await tx.unsafe(`SET LOCAL DateStyle = 'ISO, YMD'`);
  if (options.createSchema) {
    for (const table of TABLES) {
      // A table that exists is the user's: it is used as it is, indexes and all.
      const [found] = await tx.unsafe(TARGET_TABLE, [options.schema, table.name]);
      if (!found) { for (const ddl of createTableDdl(table)) await tx.unsafe(ddl); }
    }
  }
}

/** The tutorial's table (schema_postgres.sql), derived from the declaration. */
function createTableDdl(table: TableSpec): string[] {
  const ref = table.references;
  const parts = [
    ...table.columns.map((c) => `${q(c.name)} ${c.create}`),
    ...table.create.columns,
    `PRIMARY KEY (${table.key.map(q).join(", ")})`,
    ...(ref
      ? [
        `FOREIGN KEY (${ref.columns.map(q).join(", ")}) REFERENCES ${q(ref.table)} (${
          ref.targetColumns.map(q).join(", ")
        })`,
      ]
      : []),
    ...table.create.constraints,
  ];
  return [
    `CREATE TABLE IF NOT EXISTS ${q(table.name)} (${parts.join(", ")})`,
    ...table.create.indexes.map((index) => `CREATE INDEX ${index}`),
  ];
}

/** Readers go on; writers wait until COMMIT, so the rows compared are the rows kept. */
async function lockTables(tx: Tx, plans: TablePlan[]): Promise<void> {
  await tx.unsafe(
    `LOCK TABLE ${plans.map((p) => p.target.qualified).join(", ")} IN SHARE ROW EXCLUSIVE MODE`,
  );
}

/** The reject file: every problem row, one per line, as pgloader's reject files list them. */
function openRejectFile(path: string): { sink: ProblemSink; close: () => void } {
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
const CONNECTION_LOST =
  "the connection was lost; the transaction was rolled back, rerun to complete";
const UNTRUSTED_CERTIFICATE =
  "the server's certificate is not signed by a CA in sslrootcert: point sslrootcert (or PGSSLROOTCERT) at the CA that signed it";

const CONNECTION_HINTS: Record<string, string> = {
  ECONNREFUSED:
    "is PostgreSQL running, and are host and port (DATABASE_URL, PGHOST, PGPORT) right?",
  ENOENT:
    "no PostgreSQL socket in that directory: is PostgreSQL running, and are host (the socket directory) and port right?",
  ENOTFOUND: "the host name (DATABASE_URL or PGHOST) does not resolve",
  CONNECT_TIMEOUT:
    "the server did not answer in time; check host, port and firewall (or raise --connect-timeout)",
  [CLOSED_EARLY]:
    "is that PostgreSQL's port? Something there (a web server, a tunnel or load balancer whose far end is down) accepts connections and closes them; nothing was written",
  "28P01":
    "wrong user name or password (DATABASE_URL, PGUSER/PGPASSWORD or the password file ~/.pgpass)",
  "28000":
    "the server refused this client (pg_hba.conf); if it requires TLS, use sslmode=prefer (the default) or require",
  "3D000":
    "create the database first (createdb NAME), or fix its name in DATABASE_URL or PGDATABASE",
  "42501": "the user lacks a privilege it needs on the target tables",
  "26000":
    "a connection pooler in transaction mode lost a prepared statement; use the server's direct URL instead of the pooler's",
  CONNECTION_CLOSED: CONNECTION_LOST,
  CONNECTION_DESTROYED: CONNECTION_LOST,
  ECONNRESET: CONNECTION_LOST,
  ECANCELED: CONNECTION_LOST,
  EPIPE: CONNECTION_LOST,
  "57P01":
    "the server ended the connection (shutdown or pg_terminate_backend); the transaction was rolled back, rerun to complete",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNTRUSTED_CERTIFICATE,
  UNABLE_TO_GET_ISSUER_CERT: UNTRUSTED_CERTIFICATE,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: UNTRUSTED_CERTIFICATE,
  SELF_SIGNED_CERT_IN_CHAIN: UNTRUSTED_CERTIFICATE,
  DEPTH_ZERO_SELF_SIGNED_CERT: UNTRUSTED_CERTIFICATE,
  CERT_HAS_EXPIRED: "the server's certificate has expired: renew it on the server",
  ERR_TLS_CERT_ALTNAME_INVALID:
    "the server's certificate does not name this host: connect by a name the certificate lists, or use sslmode=verify-ca to check the chain only",
};

// postgres.js reports a server without TLS as a reset during the TLS handshake.
const TLS_REFUSED = /secure TLS connection|SSL/i;
const TLS_REFUSED_HINT =
  "the server does not accept TLS: use sslmode=prefer or disable, or turn ssl on in the server";

// SQLSTATE class 23: a constraint refused a row.
const INTEGRITY_VIOLATION = "23";

/**
 * Every failure becomes a MigrationError with the password removed. Errors
 * without a code from PostgreSQL or the network are bugs of ours.
 */
function asMigrationError(error: unknown, connection?: ConnectionSettings): MigrationError {
  if (error instanceof MigrationError) return error;
  const code = (error as { code?: unknown })?.code;
  const text = errorMessage(error);
  if (typeof code !== "string") {
    return new MigrationError(
      "internal",
      redact(`unexpected: ${text}; nothing was committed`, connection),
      REPORT_A_BUG,
    );
  }
  const where = connection
    ? `PostgreSQL (${describeConnection(connection)}, sslmode=${connection.sslmode})`
    : "PostgreSQL";
  const message = redact(`${where}: ${text}`, connection);
  const hint = (code === "ECONNRESET" && TLS_REFUSED.test(text) ? TLS_REFUSED_HINT : undefined) ??
    refusedHint(code, text, connection) ??
    CONNECTION_HINTS[code] ??
    "nothing was written: the transaction was rolled back";
  if (code.startsWith(INTEGRITY_VIOLATION)) {
    // A rule the set-based checks could not evaluate before writing (one
    // that involves columns PostgreSQL fills, a trigger, a domain).
    const detail = (error as { detail?: string }).detail;
    return new MigrationError(
      "data",
      redact(
        `PostgreSQL refused the data: ${text}${detail ? ` (${detail})` : ""}; nothing was written`,
        connection,
      ),
      "correct the row in SQLite, or the target's rule if it is wrong; --dry-run shows the plan without writing",
    );
  }
  return new MigrationError(code in CONNECTION_HINTS ? "connection" : "config", message, hint);
}

const REPORT_A_BUG = "this is a bug in migrate.ts: please report it, with the command you ran";

const NO_PASSWORD_HINT =
  "the server asks for a password and none was given: set it in DATABASE_URL, PGPASSWORD or the password file (~/.pgpass)";

/**
 * The fix for a refused login, where the code alone misleads: a pooler
 * reports a wrong password or database as a protocol violation (08P01), and
 * pg_hba's refusals (28000) have several causes, TLS only one of them.
 */
function refusedHint(
  code: string,
  text: string,
  connection: ConnectionSettings | undefined,
): string | undefined {
  if (code === "28P01" && connection && connection.password === undefined) {
    return NO_PASSWORD_HINT;
  }
  if (code === "08P01" && /empty password/i.test(text)) return NO_PASSWORD_HINT;
  if (code === "08P01" && /SASL|password/i.test(text)) return CONNECTION_HINTS["28P01"];
  if (code === "08P01" && /no such database/i.test(text)) return CONNECTION_HINTS["3D000"];
  if (code !== "28000") return undefined;
  if (/role .* does not exist/.test(text)) {
    return "no such user on the server: set the user in DATABASE_URL or PGUSER (without one, it is your OS user name)";
  }
  if (/peer authentication/i.test(text)) {
    return "peer authentication needs the OS user to be the database user: run as that OS user, or connect over TCP (host=localhost) with a password";
  }
  if (connection && (connection.host.startsWith("/") || connection.sslmode !== "disable")) {
    return "the server's pg_hba.conf has no rule that lets this user into this database from here: ask its administrator, or check user, database and host";
  }
  return undefined;
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
 * console.log(formatReport(await migrate({ mode: "dry-run" })));
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
  // A failed run's report is printed too: it committed nothing.
  return report.committed
    ? `Migration committed (${seconds}).`
    : `Rolled back: PostgreSQL is unchanged (${seconds}).`;
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
      const rule = p.constraint ? ` violates ${p.constraint}` : "";
      lines.push(`  ${p.table} ${p.key}${where}${value}${rule}`);
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
  let output: OutputOptions = {
    help: false,
    version: false,
    quiet: false,
    verbose: false,
    // Known before the flags are parsed: their errors are JSON too.
    json: args.includes("--json"),
  };
  let connection: ConnectionSettings | undefined;
  let connected: ConnectionInfo | undefined;
  let rejectFile: string | undefined;
  try {
    const env = environmentWithDotenv();
    const resolved = resolveOptions(args, env);
    output = resolved.output;
    connection = resolved.options.connection!;
    rejectFile = resolved.options.rejectFile;
    if (output.help) {
      console.log(USAGE);
      return 0;
    }
    if (output.version) {
      console.log(`migrate.ts ${VERSION}`);
      return 0;
    }
    const say = (line: string) => {
      if (!output.quiet && !output.json) console.log(line);
    };
    // Steps go to stderr under --json, so stdout stays one JSON object.
    const step = output.json
      ? (line: string) => output.quiet || console.error(line)
      : (line: string) => say(line);
    for (const warning of connection.warnings) console.error(warning);
    const options: Options = {
      ...resolved.options,
      onStep: step,
      onProgress: !output.quiet && Deno.stderr.isTerminal() ? progressPrinter() : undefined,
      onConnect: (info) => {
        connected = info;
        step(connectedLine(info));
      },
    };
    say(
      `Migrating ${options.sqlitePath} → ${
        describeConnection(connection)
      } (schema ${options.schema})${
        options.mode === "dry-run"
          ? " [dry run]"
          : options.mode === "verify-only"
          ? " [verify only]"
          : ""
      }`,
    );
    if (output.verbose) {
      step("connection settings (value, and where it came from):");
      for (const line of describeSources(connection)) step(line);
    }
    const report = await migrate(options);
    if (output.json) {
      console.log(redact(
        JSON.stringify({ ...report, connection: connectionJson(connection, connected) }),
        connection,
      ));
    } else say(formatReport(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    const failure = asMigrationError(error, connection);
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
          connection: connection && connectionJson(connection, connected),
        }),
        connection,
      ));
    }
    // A failed verification's report lists its mismatches, which are the
    // failure's problems: once.
    const lines = [
      `error: ${failure.message}`,
      ...(failure.report && !output.json
        ? [formatReport(failure.report)]
        : formatProblems(failure.problems)),
    ];
    if (failure.hint && failure.problems.length === 0) lines.push(`fix: ${failure.hint}`);
    if (failure.problems.length > 0 && rejectFile) {
      lines.push(`every problem row is listed in ${rejectFile}`);
    }
    console.error(redact(lines.join("\n"), connection));
    return failure.exitCode;
  }
}

/** The line after connecting: is it encrypted, and was the server verified? */
function connectedLine(info: ConnectionInfo): string {
  const tls = info.socket
    ? "Unix socket, not encrypted"
    : !info.encrypted
    ? "not encrypted"
    : info.verified === "nothing"
    ? "encrypted (TLS), server certificate not verified"
    : `encrypted (TLS), server ${info.verified} verified`;
  return `connected to ${info.target}: ${tls} (sslmode=${info.sslmode})`;
}

/** The connection as `--json` shows it: no password, each setting's source. */
function connectionJson(connection: ConnectionSettings, connected: ConnectionInfo | undefined) {
  return {
    target: describeConnection(connection),
    sslmode: connection.sslmode,
    encrypted: connected?.encrypted ?? null,
    verified: connected?.verified ?? null,
    sources: connection.sources,
  };
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
  `error: unexpected: ${message}; nothing was committed\nfix: ${REPORT_A_BUG}`;

/**
 * Signals that end a run: PostgreSQL rolls back the open transaction when the
 * connection drops, so the target stays as it was. Exit code 128 + signal.
 */
const STOP_SIGNALS: readonly [Deno.Signal, number, string][] = [
  ["SIGINT", 130, "interrupted"],
  ["SIGTERM", 143, "terminated (SIGTERM)"],
  ["SIGHUP", 129, "hung up (SIGHUP)"],
];

/**
 * Where the server listens and the key that cancels the connection's running
 * statement (PostgreSQL's CancelRequest, as libpq's PQcancel sends it).
 */
interface CancelKey {
  host?: string;
  port?: number;
  /** The Unix socket's path. */
  path?: string;
  pid: number;
  secret: number;
}

/** Set in the CLI's worker: hands the main thread the connection's cancel key. */
let cancelKeySink: ((key: CancelKey) => void) | undefined;

/**
 * Cancels the statement running on the run's connection. Closing the
 * connection alone is not enough: PostgreSQL notices it only between
 * statements, and a statement waiting for a lock (or a long one) would hold
 * the transaction, and every lock it took, until it ends. Never waits more
 * than a second: the run is ending.
 */
async function sendCancel(key: CancelKey): Promise<void> {
  const request = new DataView(new ArrayBuffer(16));
  request.setInt32(0, 16);
  request.setInt32(4, 80877102); // CancelRequest
  request.setInt32(8, key.pid);
  request.setInt32(12, key.secret);
  const send = async () => {
    const conn = key.path
      ? await Deno.connect({ transport: "unix", path: key.path })
      : await Deno.connect({ hostname: key.host!, port: key.port! });
    try {
      await conn.write(new Uint8Array(request.buffer));
      // The server closes the connection once it has read the request.
      await conn.read(new Uint8Array(1)).catch(() => null);
    } finally {
      conn.close();
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    send().catch(() => {}),
    new Promise((resolve) => timer = setTimeout(resolve, 1000)),
  ]);
  clearTimeout(timer);
}

/** The CLI runs in a worker thread, so that its heap has the limit above. */
function runCliInWorker(args: string[]): void {
  let cancelKey: CancelKey | undefined;
  for (const [signal, code, what] of STOP_SIGNALS) {
    try {
      Deno.addSignalListener(signal, async () => {
        if (cancelKey) await sendCancel(cancelKey);
        console.error(`\n${what}: the transaction was rolled back, nothing was written`);
        Deno.exit(code);
      });
    } catch (error) {
      // Windows knows SIGINT but not SIGTERM or SIGHUP.
      if (!(error instanceof TypeError)) throw error;
    }
  }
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { role: CLI_WORKER, args },
    resourceLimits: { maxYoungGenerationSizeMb: CLI_YOUNG_GENERATION_MIB },
  });
  worker.on("message", (message: number | { cancelKey: CancelKey }) => {
    if (typeof message === "number") Deno.exit(message);
    else cancelKey = message.cancelKey;
  });
  worker.on("error", (error: Error) => {
    console.error(unexpectedError(error.message));
    Deno.exit(EXIT_INTERNAL);
  });
  worker.on("exit", () => Deno.exit(EXIT_INTERNAL));
}

/**
 * A full garbage collection (see PREFETCH_COLLECT_BYTES). The CLI gets V8's
 * `gc` from a context made after `--expose-gc` is set; a library caller's
 * isolate is left as it is, and uses its `gc` only if it exposes one itself.
 */
let collectGarbage = (): void => {
  (globalThis as { gc?: () => void }).gc?.();
};

function exposeGarbageCollection(): void {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc");
    if (typeof gc === "function") collectGarbage = () => gc();
  } catch {
    // Without it memory peaks higher; nothing else changes.
  }
}

async function cliWorker(args: string[]): Promise<void> {
  exposeGarbageCollection();
  cancelKeySink = (cancelKey) => parentPort!.postMessage({ cancelKey });
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
    parentPort!.postMessage(fromPostgres ? 2 : EXIT_INTERNAL);
  });
  parentPort!.postMessage(await main(args));
}

if (import.meta.main && isMainThread) runCliInWorker(Deno.args);
if (!isMainThread && workerData?.role === CLI_WORKER) await cliWorker(workerData.args);
