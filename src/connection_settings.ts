/**
 * The connection, resolved as libpq resolves it: a URL or key=value string,
 * then PG* variables, the password file and defaults; and the masks that keep
 * the password out of every message.
 *
 * @module
 */

import { userInfo } from "node:os";
import {
  type ConnectionPart,
  type ConnectionSettings,
  DEFAULTS,
  type SettingSource,
  type SslMode,
} from "./types.ts";
import { MigrationError } from "./errors.ts";

const APPLICATION_NAME = "migrate.ts";

const SSL_MODES: readonly SslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

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
export function resolveConnection(
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
export function describeSources(
  connection: ConnectionSettings,
  origin: (source: SettingSource) => string = (source) => source,
): string[] {
  return (Object.keys(connection.sources) as ConnectionPart[]).map((part) => {
    const value = part === "password"
      ? connection.password === undefined ? "(none)" : "***"
      : String(connection[part]);
    return `  ${part.padEnd(16)}${value}  (${origin(connection.sources[part])})`;
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
export function redact(text: string, connection: ConnectionSettings | undefined): string {
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
