/**
 * What PostgreSQL, the network and TLS refuse, turned into a MigrationError
 * with a fix the user can act on.
 *
 * @module
 */

import type { ConnectionSettings, ErrorKind } from "./types.ts";
import { errorMessage, MigrationError } from "./errors.ts";
import { describeConnection, redact } from "./connection_settings.ts";

/** The code of {@link tcpSocket}'s failure when the server hung up during the handshake. */
export const CLOSED_EARLY = "CLOSED_DURING_HANDSHAKE";

export const CONNECTION_LOST =
  "the connection was lost; the transaction was rolled back, rerun to complete";

const UNTRUSTED_CERTIFICATE =
  "the server's certificate is not signed by a CA in sslrootcert: point sslrootcert (or PGSSLROOTCERT) at the CA that signed it";

export const CONNECTION_HINTS: Record<string, string> = {
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
  "55P03":
    "another session held a lock the run needs for longer than --lock-timeout: finish or end it (pg_stat_activity shows who), then rerun; or raise --lock-timeout",
  "25006":
    "the server is read-only for this session (a standby, or default_transaction_read_only): point DATABASE_URL at the primary",
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
export function asMigrationError(error: unknown, connection?: ConnectionSettings): MigrationError {
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
  return new MigrationError(kindOf(code), message, hint);
}

/**
 * Codes with a hint that are no fault of the connection: a missing
 * privilege or a read-only server is setup, a lock not granted in time is
 * another session's.
 */
const KIND_OF_CODE: Record<string, ErrorKind> = {
  "42501": "config",
  "25006": "config",
  "55P03": "lock",
};

const kindOf = (code: string): ErrorKind =>
  KIND_OF_CODE[code] ?? (code in CONNECTION_HINTS ? "connection" : "config");

export const REPORT_A_BUG =
  "this is a bug in migrate.ts: please report it, with the command you ran";

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
