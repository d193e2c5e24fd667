/**
 * The run's own session settings: what a role or database sets (ALTER ROLE
 * … SET, a hosted platform's limits) must not end or change a run, and a
 * read-only server is refused before anything is read.
 *
 * @module
 */

import type { Mode, Options, SessionSetting } from "./types.ts";
import { MigrationError } from "./errors.ts";
import type { Tx } from "./connect.ts";

/** A setting the run owns: its value for the run, and why it cannot be left to the server. */
interface OwnedSetting {
  name: string;
  value: (options: Pick<Options, "lockTimeout">, current: string) => string;
  why: string;
}

/**
 * Set with SET LOCAL (set_config(…, true)) as the transaction's first
 * statements, not as startup parameters: a pooler in transaction mode
 * (PgBouncer) refuses unknown startup parameters, and a setting local to
 * the transaction never leaks into the pooler's other clients. Settings the
 * server does not have (transaction_timeout before PostgreSQL 17) are skipped.
 */
const OWNED_SETTINGS: OwnedSetting[] = [
  {
    name: "statement_timeout",
    value: () => "0",
    why: "one COPY or comparison of a large table outlasts a role's limit",
  },
  {
    name: "idle_in_transaction_session_timeout",
    value: () => "0",
    why: "the transaction idles between statements while SQLite is read",
  },
  {
    name: "transaction_timeout",
    value: () => "0",
    why: "the whole run is one transaction",
  },
  {
    name: "lock_timeout",
    // 0 would mean no limit: --lock-timeout 0 is the shortest wait there is.
    value: ({ lockTimeout }) =>
      lockTimeout === undefined ? "0" : `${Math.max(1, lockTimeout * 1000)}ms`,
    why: "--lock-timeout bounds every lock wait",
  },
  {
    name: "TimeZone",
    value: () => "UTC",
    why: "SQLite's CURRENT_TIMESTAMP and datetime() write UTC without an offset",
  },
  {
    name: "DateStyle",
    value: () => "ISO, YMD",
    why: "dates read back as SQLite writes them",
  },
  {
    // A commit the server has not flushed could be lost in a crash after
    // the run said it committed; remote_* and local all flush locally.
    name: "synchronous_commit",
    value: (_, current) => current === "off" ? "on" : current,
    why: "a reported commit survives a crash",
  },
];

/**
 * BEGIN's options per mode: a migration reads committed rows under its
 * table locks; verify-only reads one snapshot without locking (REPEATABLE
 * READ), whatever default_transaction_isolation a role sets.
 */
export function transactionMode(mode: Mode): string {
  return mode === "verify-only"
    ? "isolation level repeatable read"
    : "isolation level read committed";
}

/** What the transaction's first step found and set. */
export interface Session {
  /** The settings set, with what they were and where that came from. */
  settings: SessionSetting[];
  /** Nothing can be written, not even a temporary table: only a check can run. */
  readOnly: boolean;
}

/**
 * The transaction's first step: refuses a read-only server for a run that
 * writes, then sets {@link OWNED_SETTINGS}.
 */
export async function ownSession(tx: Tx, options: Options): Promise<Session> {
  const [server] = await tx`
    SELECT pg_is_in_recovery() AS standby,
           current_setting('transaction_read_only') = 'on' AS read_only,
           (SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only') AS source`;
  if (options.mode !== "verify-only") refuseReadOnly(server as ServerState, options.mode);
  const found = await tx`
    SELECT name, current_setting(name) AS was, source FROM pg_settings
    WHERE lower(name) IN ${tx(OWNED_SETTINGS.map((s) => s.name.toLowerCase()))}`;
  const settings: SessionSetting[] = [];
  for (const owned of OWNED_SETTINGS) {
    const row = found.find((r) => r.name.toLowerCase() === owned.name.toLowerCase());
    if (!row) continue;
    const value = owned.value(options, row.was);
    settings.push({ name: row.name, value, was: row.was, source: row.source, why: owned.why });
  }
  // All in one statement: one round trip to a distant server, not seven.
  await tx`SELECT set_config(n, v, true) FROM unnest(${settings.map((s) => s.name)}::text[],
    ${settings.map((s) => s.value)}::text[]) AS u(n, v)`;
  return { settings, readOnly: server.standby || server.read_only };
}

/** Whether the server takes writes from this session. */
interface ServerState {
  standby: boolean;
  read_only: boolean;
  /** Where default_transaction_read_only came from: user, database, configuration file… */
  source: string;
}

/** A standby, or a role or database whose transactions are read-only, cannot take a migration. */
function refuseReadOnly(
  server: ServerState,
  mode: Mode,
): void {
  const run = mode === "dry-run" ? "a dry run (it writes, then rolls back)" : "a migration";
  if (server.standby) {
    throw new MigrationError(
      "config",
      `the server is read-only: it is a standby (a read replica, in recovery) and cannot take ${run}; nothing was read`,
      "point DATABASE_URL at the primary; --verify-only works against a standby",
    );
  }
  if (server.read_only) {
    throw new MigrationError(
      "config",
      `the server is read-only for this user: default_transaction_read_only is on (set by ${server.source}), so it cannot take ${run}; nothing was read`,
      "point DATABASE_URL at the primary, with a user that may write (ALTER ROLE … RESET default_transaction_read_only, if the read-only setting is a mistake)",
    );
  }
}

/** The verbose lines: each owned setting, and what the server would have given. */
export function describeSettings(settings: SessionSetting[]): string[] {
  return settings.map((s) =>
    `  ${s.name} = ${s.value}${
      s.was === s.value ? "" : ` (was ${s.was}, from ${s.source})`
    }: ${s.why}`
  );
}
