/**
 * Configuration: each flag declared once (it drives the parser and --help),
 * then flags > environment > .env > defaults, resolved in one place.
 *
 * @module
 */

import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };
import { DEFAULTS, type Options } from "./types.ts";
import { errorMessage, EXIT_CODES, MigrationError } from "./errors.ts";
import { resolveConnection } from "./connection_settings.ts";

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
    help: "give up after SEC seconds waiting for a lock: another run, the app (default: wait)",
  },
  { name: "quiet", type: "boolean", help: "print only errors" },
  { name: "verbose", type: "boolean", help: "also say where each connection setting came from" },
  { name: "json", type: "boolean", help: "print the report as one JSON object on stdout" },
  { name: "version", type: "boolean", help: "print the version and exit" },
  { name: "help", type: "boolean", short: "h", help: "show this help" },
];

// `deno compile` runs the module from a directory named deno-compile-<binary>.
const COMPILED: boolean = import.meta.url.includes("/deno-compile-") ||
  !/^deno(\.exe)?$/.test(Deno.execPath().split(/[\\/]/).at(-1) ?? "");

/** How the user started this program, for the usage text. */
const PROGRAM: string = COMPILED ? "migrate" : "deno run -A migrate.ts";

/** The version in deno.json. */
export const VERSION: string = denoJson.version;

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
export function environmentWithDotenv(path = ".env"): Record<string, string> {
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
