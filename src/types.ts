/**
 * The public types of the library API: options, progress, problems and the report.
 *
 * @module
 */

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
  /** Path of the SQLite database. CLI: `--sqlite`, env `SQLITE_PATH`. */
  sqlitePath: string;
  /**
   * PostgreSQL connection URL or libpq `key=value` string, used alone when
   * {@link Options.connection} is not given. CLI: `--database-url`, env `DATABASE_URL`.
   */
  databaseUrl: string;
  /**
   * The connection resolved with libpq's rules (URL, PG* variables, password
   * file, defaults); {@link resolveOptions} fills it in for the CLI.
   */
  connection?: ConnectionSettings;
  /** PostgreSQL schema holding `tracks` and `snapshots`. CLI: `--schema`. */
  schema: string;
  /** Create the schema and the tutorial's tables when they do not exist. CLI: `--create-schema`. */
  createSchema: boolean;
  /** Rows read from SQLite per call; more is a little faster and holds more memory. CLI: `--batch-size`. */
  batchSize: number;
  /** `fail` (default) or `null`: store SQL NULL for bad `raw_json`. CLI: `--invalid-json`. */
  invalidJson: InvalidJsonPolicy;
  /** `fail` (default) or `skip`: leave orphan snapshots out. CLI: `--orphans`. */
  orphans: OrphanPolicy;
  /** Delete target rows that the source does not have. CLI: `--prune`. */
  prune: boolean;
  /**
   * Take the careful path even where a fast path applies (a first run
   * straight into empty tables, a rerun compared bucket by bucket): stage
   * every row, check it set-based and compare row by row. Same result,
   * slower; the fast paths hand over to it by themselves whenever something
   * needs explaining.
   */
  careful?: boolean;
  /** Migrate and commit, do everything and roll back, or only compare. CLI: `--dry-run`, `--verify-only`. */
  mode: Mode;
  /**
   * SQLite columns that have no column in PostgreSQL, acknowledged as not
   * migrated: `table.column`, or `column` for every table that has it.
   * CLI: `--ignore-columns`.
   */
  ignoreColumns: string[];
  /** Write every problem row to this file: JSON lines, or CSV when it ends in `.csv`. CLI: `--reject-file`. */
  rejectFile?: string;
  /** Seconds to wait for a PostgreSQL connection. CLI: `--connect-timeout`, env `PGCONNECT_TIMEOUT`. */
  connectTimeout: number;
  /**
   * Seconds to wait for each lock: another run on the same schema, the app's
   * sessions on the tables, the app's write on the SQLite file. PostgreSQL's
   * locks are waited for without limit when absent, SQLite's for 10 s.
   * CLI: `--lock-timeout`.
   */
  lockTimeout?: number;
  /** Called once connected: the target, and whether TLS is on and verified. */
  onConnect?: (info: ConnectionInfo) => void;
  /** Called with progress while rows are read and sent. */
  onProgress?: (progress: Progress) => void;
  /**
   * Called with one line per step ("writing tracks", "comparing SQLite with
   * PostgreSQL"). `detail` is true for lines about how the tool works inside
   * (buckets, staging tables), which the CLI prints only with `--verbose`.
   */
  onStep?: Step;
  /** Called once the transaction began, with the server settings the run set for itself. */
  onSettings?: (settings: SessionSetting[]) => void;
  /**
   * Called once connected, with what cancels the run's running statement
   * (PostgreSQL's CancelRequest): the CLI sends it when a signal ends the run.
   */
  onCancelKey?: (key: CancelKey) => void;
}

/** Receives the progress lines of a run; see {@link Options.onStep}. */
export type Step = (line: string, detail?: boolean) => void;

/**
 * How a table was loaded and compared:
 * - `direct`: a first run into the empty table, rows sent straight into it and
 *   verified by count and digest sum;
 * - `buckets`: a rerun that compared sums of row digests bucket by bucket and
 *   read again only the rows of buckets that differ;
 * - `careful`: every row staged in PostgreSQL, checked and compared there, so
 *   that every offending row is named;
 * - `read-only`: `--verify-only` where nothing can be written (a hot standby,
 *   a read-only role): every row's digest compared in JavaScript, nothing
 *   created in PostgreSQL.
 */
export type Strategy = "direct" | "buckets" | "careful" | "read-only";

/** A server setting the run sets for its transaction, whatever a role or database sets. */
export interface SessionSetting {
  /** The setting's name, as pg_settings spells it. */
  name: string;
  /** The value for the run. */
  value: string;
  /** What the server gave the session. */
  was: string;
  /** Where that came from (pg_settings.source): user, database, configuration file, default. */
  source: string;
  /** Why the run cannot leave it to the server. */
  why: string;
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
  /** How the table was loaded and compared. */
  strategy: Strategy;
  /** For the `buckets` strategy: how many buckets of rows differed, and were read again. */
  differingBuckets?: number;
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
  /**
   * SQLite's own row id (an `INTEGER PRIMARY KEY` column such as
   * `snapshots.id`) that the target has no column for: not migrated, since
   * the target keys the table by its natural key.
   */
  rowIds: string[];
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
  /**
   * Why a first run or rerun went on with the `careful` strategy after it had
   * begun another (a row to explain, a difference to name); absent otherwise.
   */
  carefulBecause?: string;
  /** Seconds for the whole run. */
  seconds: number;
}

/**
 * Why a run stopped. `exitCode` is 1 for data, 2 for usage/setup/connection,
 * 70 for an internal error (a bug of ours).
 */
export type ErrorKind =
  | "usage"
  | "config"
  | "connection"
  | "lock"
  | "data"
  | "verification"
  | "internal";

/** Defaults, as in the seed script. */
export const DEFAULTS = {
  sqlitePath: "music_time_machine.db",
  databaseUrl: "postgresql://localhost/music_time_machine_pg",
  schema: "public",
  batchSize: 100,
  connectTimeout: 10,
} as const;

// --- The connection, resolved as libpq resolves it -------------------------

/** libpq's TLS modes; `prefer` is the default, as in libpq. */
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

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

/**
 * Where the server listens and the key that cancels the connection's running
 * statement (PostgreSQL's CancelRequest, as libpq's PQcancel sends it).
 */
export interface CancelKey {
  /** The server's host name or address, for TCP. */
  host?: string;
  /** The server's port, for TCP. */
  port?: number;
  /** The Unix socket's path. */
  path?: string;
  /** The backend's process id. */
  pid: number;
  /** The backend's secret key. */
  secret: number;
}
