// `deno task test`: runs every test file (`*_test.ts`) against a real PostgreSQL, starting
// one when there is none to use.
//
// - TEST_DATABASE_URL set: the tests use it, as before.
// - else the default (postgresql://mtm:mtm-test-pw@localhost:5432/mtm_test,
//   what .ci/setup-postgres makes) if we can log in there;
// - else, or with TEST_EMBEDDED_POSTGRES=1: an embedded PostgreSQL in a temp
//   folder, set up like .ci/setup-postgres does (roles mtm, mtm_tls, mtm_writer,
//   database mtm_test, TLS), stopped and deleted when the tests end, pass, fail
//   or are interrupted.
//
// Arguments go to `deno test`: deno task test --filter TLS
import postgres from "postgres";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./embedded_pg.ts";

const DEFAULT_URL = "postgresql://mtm:mtm-test-pw@localhost:5432/mtm_test";
const TEST_PASSWORD = "mtm-test-pw";
/** Every test file of the project (`*_test.ts`) runs from here. */
const ROOT = new URL("..", import.meta.url).pathname;
/** Refuse mtm_tls without TLS before any other rule, as .ci/setup-postgres does. */
const TLS_ONLY_HBA = [
  "hostnossl all mtm_tls 127.0.0.1/32 reject",
  "hostnossl all mtm_tls ::1/128 reject",
];

const masked = (url: string) => url.replace(/:[^:@/]*@/, ":***@");

/** Why we cannot log in at `url`, or undefined when we can. */
async function cannotUse(url: string): Promise<string | undefined> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await sql.end({ timeout: 0 });
  }
}

/** Roles and database as .ci/setup-postgres makes them on Debian's server. */
async function setUpTestDatabase(pg: EmbeddedPostgres): Promise<string> {
  const sql = postgres(pg.adminUrl, { max: 1, onnotice: () => {} });
  try {
    for (const role of ["mtm", "mtm_tls", "mtm_writer"]) {
      // Utility statements take no parameters; both names are constants.
      await sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD '${TEST_PASSWORD}'`);
    }
    await sql`GRANT mtm TO mtm_tls`;
    // The password test creates (and drops) a role of its own.
    await sql`ALTER ROLE mtm CREATEROLE`;
    await sql`CREATE DATABASE mtm_test OWNER mtm ENCODING 'UTF8'`;
  } finally {
    await sql.end();
  }
  return pg.url("mtm", TEST_PASSWORD, "mtm_test");
}

/** The tests' process while it runs; signals sent to us alone are passed on to it. */
let tests: Deno.ChildProcess | undefined;
let interrupted = false;

function onSignal(signal: Deno.Signal): void {
  // Ctrl-C reaches the tests from the terminal too; either way we wait for
  // them to end and then clean up, instead of dying with the server running.
  interrupted = true;
  try {
    tests?.kill(signal);
  } catch {
    // already ended
  }
}

async function runTests(env: Record<string, string>): Promise<number> {
  if (interrupted) return 130;
  tests = new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", ...Deno.args],
    cwd: ROOT,
    env,
  }).spawn();
  const status = await tests.status;
  tests = undefined;
  return status.signal ? 128 + (status.signal === "SIGINT" ? 2 : 15) : status.code;
}

async function main(): Promise<number> {
  const forced = Deno.env.get("TEST_EMBEDDED_POSTGRES") === "1";
  const given = Deno.env.get("TEST_DATABASE_URL");
  if (!forced && given) {
    console.error(`tests: TEST_DATABASE_URL=${masked(given)}`);
    return await runTests({});
  }
  const why = forced ? "TEST_EMBEDDED_POSTGRES=1" : await cannotUse(DEFAULT_URL);
  if (!why) {
    console.error(`tests: ${masked(DEFAULT_URL)} (the default; set TEST_DATABASE_URL for another)`);
    return await runTests({});
  }
  console.error(
    `tests: not using ${masked(DEFAULT_URL)} (${why}); starting an embedded PostgreSQL`,
  );
  const pg = await startEmbeddedPostgres({ hbaFirst: TLS_ONLY_HBA });
  try {
    const url = await setUpTestDatabase(pg);
    console.error(
      `tests: embedded PostgreSQL ${pg.version} at ${masked(url)}, TLS ${
        pg.noTls ? `off (${pg.noTls})` : "on"
      }; stopped and deleted after the run`,
    );
    return await runTests({
      TEST_DATABASE_URL: url,
      TEST_SOCKET_DIR: pg.socketDir,
      ...pg.sslRootCert ? { TEST_SSLROOTCERT: pg.sslRootCert } : { TEST_NO_TLS: pg.noTls ?? "" },
    });
  } finally {
    await pg.stop();
  }
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", () => onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => onSignal("SIGTERM"));
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(interrupted ? "interrupted" : `error: ${(error as Error).message}`);
    Deno.exit(interrupted ? 130 : 2);
  }
}
