/**
 * Configuration: each flag declared once (it drives the parser and --help),
 * then flags > environment > .env > defaults, resolved in one place.
 *
 * @module
 */

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };
import { DEFAULTS, type Options } from "./types.ts";
import { errorMessage, EXIT_CODES, MigrationError } from "./errors.ts";
import { resolveConnection } from "./connection_settings.ts";

/** How a flag's text becomes a value. */
type FlagKind = "boolean" | "text" | "path" | "integer" | "choice" | "list";

/**
 * One command-line flag, declared once: the parser, `--help`, README's table
 * (checked by tools/readme.ts) and {@link resolveOptions} all come from it.
 */
export interface FlagSpec {
  /** The long name, without `--`. */
  name: string;
  kind: FlagKind;
  /** The one-letter form, without `-`. */
  short?: string;
  /** How the value is written in `--help`: `PATH`, `N`. */
  value?: string;
  /** The environment variable (also read from `.env`) that sets it when the flag is absent. */
  env?: string;
  /** The value when neither the flag nor its variable is given, as `--help` shows it. */
  default?: string | number;
  /** The values a `choice` flag accepts, the default first. */
  choices?: readonly string[];
  /** What it does, for `--help` and README; the variable and default are added to it. */
  help: string;
  /**
   * The {@link Options} or {@link OutputOptions} field it fills; absent for
   * flags that decide something together (the mode, the connection).
   */
  field?: keyof Options | keyof OutputOptions;
}

/** Every flag of the CLI. Adding one here adds it to the parser, `--help` and README's check. */
export const FLAGS: readonly FlagSpec[] = [
  {
    name: "sqlite",
    kind: "path",
    value: "PATH",
    env: "SQLITE_PATH",
    default: DEFAULTS.sqlitePath,
    help: "SQLite database to read",
    field: "sqlitePath",
  },
  {
    name: "database-url",
    kind: "text",
    value: "URL",
    env: "DATABASE_URL",
    help: "PostgreSQL URL or libpq key=value string (rules below)",
  },
  {
    name: "schema",
    kind: "text",
    value: "NAME",
    default: DEFAULTS.schema,
    help: "PostgreSQL schema holding the tables",
    field: "schema",
  },
  {
    name: "create-schema",
    kind: "boolean",
    help: "create the schema and the tutorial's tables if they do not exist",
    field: "createSchema",
  },
  {
    name: "dry-run",
    kind: "boolean",
    help: "do everything inside the transaction, print what would change, roll back",
  },
  {
    name: "verify-only",
    kind: "boolean",
    help: "compare the target with SQLite without writing anything",
  },
  {
    name: "prune",
    kind: "boolean",
    help: "delete rows that exist in PostgreSQL but not in SQLite",
    field: "prune",
  },
  {
    name: "ignore-columns",
    kind: "list",
    value: "LIST",
    help:
      "SQLite columns with no column in PostgreSQL, not to migrate: table.column or column, comma-separated",
    field: "ignoreColumns",
  },
  {
    name: "reject-file",
    kind: "path",
    value: "PATH",
    help: "write every problem row to PATH: JSON lines, or CSV when PATH ends in .csv",
    field: "rejectFile",
  },
  {
    name: "invalid-json",
    kind: "choice",
    value: "POLICY",
    choices: ["fail", "null"],
    help: "raw_json that is not JSON: fail, or null to store SQL NULL (each row reported)",
    field: "invalidJson",
  },
  {
    name: "orphans",
    kind: "choice",
    value: "POLICY",
    choices: ["fail", "skip"],
    help: "snapshots whose track is missing: fail, or skip to leave them out (each row reported)",
    field: "orphans",
  },
  {
    name: "batch-size",
    kind: "integer",
    value: "N",
    default: DEFAULTS.batchSize,
    help: "rows read from SQLite per call",
    field: "batchSize",
  },
  {
    name: "connect-timeout",
    kind: "integer",
    value: "SEC",
    env: "PGCONNECT_TIMEOUT",
    default: DEFAULTS.connectTimeout,
    help: "give up connecting after SEC seconds",
  },
  {
    name: "lock-timeout",
    kind: "integer",
    value: "SEC",
    help: "give up after SEC seconds waiting for a lock: another run, the app (default: wait)",
    field: "lockTimeout",
  },
  { name: "quiet", kind: "boolean", short: "q", help: "print only errors", field: "quiet" },
  {
    name: "verbose",
    kind: "boolean",
    short: "v",
    help: "also say where each setting came from",
    field: "verbose",
  },
  {
    name: "json",
    kind: "boolean",
    help: "print the report as one JSON object on stdout",
    field: "json",
  },
  {
    name: "version",
    kind: "boolean",
    short: "V",
    help: "print the version and exit",
    field: "version",
  },
  { name: "help", kind: "boolean", short: "h", help: "show this help", field: "help" },
];

/**
 * The connection's variables besides DATABASE_URL, as libpq reads them (an
 * empty one counts as unset): README's table lists them after the flags.
 */
export const LIBPQ_VARIABLES: readonly { name: string; help: string }[] = [
  { name: "PGHOST", help: "host name, or a Unix socket directory (starts with /)" },
  { name: "PGPORT", help: "port (default 5432)" },
  { name: "PGDATABASE", help: "database (default music_time_machine_pg)" },
  { name: "PGUSER", help: "role (default: your operating system user name)" },
  { name: "PGPASSWORD", help: "password (better: ~/.pgpass or PGPASSFILE)" },
  { name: "PGPASSFILE", help: "password file (default ~/.pgpass; must be chmod 0600)" },
  { name: "PGSSLMODE", help: "disable, allow, prefer (default), require, verify-ca, verify-full" },
  { name: "PGSSLROOTCERT", help: "CA certificates for verify-ca/verify-full, or system" },
  { name: "PGAPPNAME", help: "application name in pg_stat_activity (default migrate.ts)" },
];

/** How a flag is written in `--help` and README: `-q, --quiet`, `--sqlite PATH`, `--orphans=POLICY`. */
export function flagUsage(flag: FlagSpec): string {
  const value = !flag.value ? "" : flag.kind === "choice" ? `=${flag.value}` : ` ${flag.value}`;
  return `${flag.short ? `-${flag.short}, ` : ""}--${flag.name}${value}`;
}

/** A flag's help with its variable and default, as `--help` and README print it. */
export function flagDescription(flag: FlagSpec): string {
  const notes = [
    ...(flag.env ? [`env ${flag.env}`] : []),
    ...(flag.default !== undefined ? [`default ${flag.default}`] : []),
    ...(flag.choices ? [`default ${flag.choices[0]}`] : []),
  ];
  return notes.length > 0 ? `${flag.help} (${notes.join("; ")})` : flag.help;
}

// `deno compile` runs the module from a directory named deno-compile-<binary>.
const COMPILED: boolean = import.meta.url.includes("/deno-compile-") ||
  !/^deno(\.exe)?$/.test(Deno.execPath().split(/[\\/]/).at(-1) ?? "");

/** How the user started this program, for the usage text. */
const PROGRAM: string = COMPILED ? "migrate" : "deno task migrate";

/** The version in deno.json. */
export const VERSION: string = denoJson.version;

function exitCodeHelp(): string {
  const lines = [];
  for (let i = 0; i < EXIT_CODES.length; i += 2) lines.push(EXIT_CODES.slice(i, i + 2).join(", "));
  return lines.join(",\n            ");
}

function flagHelp(): string {
  return FLAGS.map((flag) => `  ${flagUsage(flag).padEnd(24)}${flagDescription(flag)}`)
    .join("\n");
}

/** What the CLI understands; `--help` prints this. */
export const USAGE: string =
  `migrate.ts ${VERSION}: move the Music Time Machine from SQLite to PostgreSQL

Usage: ${PROGRAM} [options]${
    COMPILED
      ? ""
      : "\n       (deno task migrate runs deno run -A migrate.ts with the permissions it needs)"
  }

Options:
${flagHelp()}

Configuration is read from flags, then the environment, then the .env file in the
folder you run the command from (a variable already set wins over .env; an empty
one counts as unset). Relative paths mean that folder too, under deno task as well.
The connection follows libpq: DATABASE_URL (postgresql://… or host=… dbname=…),
then PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT,
PGAPPNAME, PGCONNECT_TIMEOUT, then the password file (PGPASSFILE or ~/.pgpass),
then the defaults ${DEFAULTS.databaseUrl}, sslmode=prefer.
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

/** The `.env` file read, and the names it set that the environment did not. */
export interface Dotenv {
  /** The file's absolute path. */
  path: string;
  /** The variables whose value came from the file. */
  names: Set<string>;
}

/**
 * The folder the user ran the command from: `deno task` runs tasks in the
 * project's folder and names the user's in `INIT_CWD` (as npm does).
 */
export function userFolder(env: Record<string, string | undefined> = Deno.env.toObject()): string {
  return env.INIT_CWD || Deno.cwd();
}

/**
 * The environment as the tool sees it, with `.env` from `folder` (the user's):
 * variables already set win over the file, as with python-dotenv (Deno's
 * `process.loadEnvFile` would override them), except an empty one: an empty
 * `DATABASE_URL=` means unset, as an empty `PGHOST` does to libpq. A missing
 * `.env` is not an error.
 */
export function loadEnvironment(
  folder: string = userFolder(),
  environment: Record<string, string> = Deno.env.toObject(),
): { env: Record<string, string>; dotenv: Dotenv } {
  const path = absolute(folder, ".env");
  let fileValues: Record<string, string> = {};
  try {
    fileValues = parseDotenv(Deno.readTextFileSync(path));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new MigrationError(
        "config",
        `the .env file in the current directory cannot be read (${path}): ${errorMessage(error)}`,
        `fix or remove .env (settings in the environment or flags need no .env)`,
      );
    }
  }
  const env = { ...environment };
  const names = new Set<string>();
  for (const [name, value] of Object.entries(fileValues)) {
    if (env[name]) continue;
    env[name] = value;
    names.add(name);
  }
  return { env, dotenv: { path, names } };
}

/**
 * The environment with the `.env` file at `path` under it; see {@link loadEnvironment}.
 */
export function environmentWithDotenv(path = ".env"): Record<string, string> {
  const slash = path.lastIndexOf("/");
  return loadEnvironment(slash < 0 ? Deno.cwd() : path.slice(0, slash) || "/").env;
}

/** Where a setting came from, as `--verbose` says it. */
export function describeOrigin(source: string, dotenv?: Dotenv): string {
  return dotenv?.names.has(source) ? `${source} in ${dotenv.path}` : source;
}

/** `path` made absolute against `folder`; `~/` is the home folder, as a shell would make it. */
function absolute(folder: string, path: string, home?: string): string {
  if (home && (path === "~" || path.startsWith("~/"))) path = home + path.slice(1);
  return resolve(folder, path);
}

/** Connection variables that name files: relative ones mean the user's folder too. */
const PATH_VARIABLES = ["PGPASSFILE", "PGSSLROOTCERT"] as const;

/** The resolved value of each flag, and where it came from. */
export type Settings = Record<string, { value: unknown; source: string }>;

/**
 * Resolves command-line flags and environment variables into {@link Options}.
 * This is the only place that knows flags, variable names and defaults: each
 * comes from {@link FLAGS}. With `folder` (the CLI passes the user's), relative
 * paths and `~` are resolved against it.
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
  folder?: string,
): { options: Options; output: OutputOptions; settings: Settings } {
  const parsed = parseFlags(args);
  const settings: Settings = {};
  for (const flag of FLAGS) {
    let text = parsed[flag.name];
    let source = "flag";
    // PGCONNECT_TIMEOUT is libpq's: the connection's resolution reads it.
    if (text === undefined && flag.env && flag.env !== "PGCONNECT_TIMEOUT" && env[flag.env]) {
      text = env[flag.env];
      source = flag.env;
    }
    settings[flag.name] = text === undefined
      ? { value: defaultValue(flag, folder), source: "default" }
      : { value: valueOf(flag, text, source, folder, env.HOME), source };
  }
  const value = <T>(name: string) => settings[name].value as T;
  const fields = Object.fromEntries(
    FLAGS.filter((flag) => flag.field !== undefined && settings[flag.name].value !== undefined)
      .map((flag) => [flag.field, settings[flag.name].value]),
  );
  if (value("dry-run") && value("verify-only")) {
    throw new MigrationError(
      "usage",
      "--dry-run and --verify-only exclude each other",
      "pick one: --dry-run rehearses the whole migration, --verify-only only compares",
    );
  }
  const url = settings["database-url"];
  const connectionEnv = { ...env };
  for (const name of PATH_VARIABLES) {
    const path = env[name];
    if (folder && path && path !== "system") connectionEnv[name] = absolute(folder, path, env.HOME);
  }
  const connection = resolveConnection(
    url.value as string | undefined,
    url.source === "flag" ? "flag" : "DATABASE_URL",
    connectionEnv,
  );
  if (settings["connect-timeout"].source === "flag") {
    connection.connectTimeout = value("connect-timeout");
    connection.sources.connectTimeout = "flag";
  }
  // The fields come from FLAGS, each converted by its kind: see valueOf.
  const options = {
    ...fields,
    databaseUrl: url.value ?? DEFAULTS.databaseUrl,
    connection,
    connectTimeout: connection.connectTimeout,
    mode: value("dry-run") ? "dry-run" : value("verify-only") ? "verify-only" : "migrate",
  } as unknown as Options & OutputOptions;
  const output: OutputOptions = {
    help: options.help,
    version: options.version,
    quiet: options.quiet,
    verbose: options.verbose,
    json: options.json,
  };
  for (const name of Object.keys(output)) {
    delete (options as unknown as Record<string, unknown>)[name];
  }
  return { options, output, settings };
}

/** Parses the command line by FLAGS; an unknown flag gets the nearest known one. */
function parseFlags(args: string[]): Record<string, string | undefined> {
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        FLAGS.map((flag) => [flag.name, {
          type: flag.kind === "boolean" ? "boolean" : "string",
          ...(flag.short ? { short: flag.short } : {}),
        }]),
      ),
    });
    return Object.fromEntries(
      Object.entries(values).map(([name, v]) => [name, v === true ? "true" : v as string]),
    );
  } catch (error) {
    const unknown = /Unknown option '(-{1,2}[^'=]*)/.exec(errorMessage(error))?.[1];
    const near = unknown ? nearestFlag(unknown) : undefined;
    const positional = /Unexpected argument '([^']*)'/.exec(errorMessage(error))?.[1];
    throw new MigrationError(
      "usage",
      errorMessage(error).replace(/\. To specify a positional argument.*$/s, ""),
      near
        ? `did you mean --${near.name}? (deno task migrate --help lists every option)`
        : positional !== undefined
        ? "options take their value after a space or =, e.g. --sqlite app.db; quote a value with spaces"
        : "deno task migrate --help lists every option",
    );
  }
}

/** The flag whose name is closest to what was typed, when it is close enough to be a typo. */
export function nearestFlag(typed: string): FlagSpec | undefined {
  const name = typed.replace(/^-+/, "");
  let best: FlagSpec | undefined;
  let bestDistance = Infinity;
  for (const flag of FLAGS) {
    const distance = Math.min(
      editDistance(name, flag.name),
      flag.short === name ? 0 : Infinity,
    );
    if (distance < bestDistance) [best, bestDistance] = [flag, distance];
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 4)) ? best : undefined;
}

/** Levenshtein distance: the fewest one-character edits from `a` to `b`. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}

function defaultValue(flag: FlagSpec, folder: string | undefined): unknown {
  switch (flag.kind) {
    case "path":
      return folder && flag.default !== undefined
        ? absolute(folder, String(flag.default))
        : flag.default;
    case "boolean":
      return false;
    case "list":
      return [];
    case "choice":
      return flag.choices![0];
    default:
      return flag.default;
  }
}

/** The flag's text as its value; `source` names the flag or variable in errors. */
function valueOf(
  flag: FlagSpec,
  text: string,
  source: string,
  folder: string | undefined,
  home: string | undefined,
): unknown {
  const given = source === "flag" ? `--${flag.name}` : source;
  switch (flag.kind) {
    case "boolean":
      return text === "true";
    case "text":
      return text;
    case "path":
      return folder ? absolute(folder, text, home) : text;
    case "list":
      return text.split(",").map((name) => name.trim()).filter((name) => name !== "");
    case "integer": {
      const value = Number(text);
      if (!Number.isInteger(value) || value < 1) {
        throw new MigrationError(
          "usage",
          `${given} must be a positive integer, got '${text}'`,
          `give a whole number of 1 or more, e.g. --${flag.name} ${flag.default ?? 10}`,
        );
      }
      return value;
    }
    case "choice":
      if (!flag.choices!.includes(text)) {
        throw new MigrationError(
          "usage",
          `${given} must be one of ${flag.choices!.join(", ")}, got '${text}'`,
          `write ${flag.choices!.map((c) => `--${flag.name}=${c}`).join(" or ")}: ${flag.help}`,
        );
      }
      return text;
  }
}
