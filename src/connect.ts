/**
 * Connecting with exactly the resolved settings: libpq's TLS modes as attempts,
 * our own TCP socket, and what the run needs to cancel its statement.
 *
 * @module
 */

import { checkServerIdentity } from "node:tls";
import { connect as connectTcp, type Socket } from "node:net";
import type postgres from "postgres";
import type { ConnectionSettings, Options, SslMode } from "./types.ts";
import { MigrationError } from "./errors.ts";
import { describeConnection } from "./connection_settings.ts";
import { asMigrationError, CLOSED_EARLY, CONNECTION_HINTS, CONNECTION_LOST } from "./pg_errors.ts";

export type Sql = postgres.Sql;

export type Tx = postgres.TransactionSql;

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
export function getReady(connection: ConnectionSettings): void {
  loadDriver().catch(() => {}); // awaited, and reported, by connect
  if (String(connection.host).startsWith("/") || connection.sslmode === "disable") return;
  crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"])
    .catch(() => {}); // nothing depends on it but the time
}

/**
 * Connects with exactly the settings resolved here: postgres.js would
 * otherwise fill gaps from PG* variables and defaults of its own.
 */
export async function connect(options: Options): Promise<Sql> {
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
      options.onCancelKey?.({
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
