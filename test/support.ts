// What the tests share: the test server's URL, SQLite fixtures built by small
// helpers, a throwaway target schema per test, and the CLI run as a user runs it.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import { MigrationError, type Options, type Report, type Strategy } from "../migrate.ts";

export const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ??
  "postgresql://mtm:mtm-test-pw@localhost:5432/mtm_test";

export const TEST_PASSWORD = new URL(TEST_DATABASE_URL).password;

export const MIGRATE_TS = new URL("../migrate.ts", import.meta.url).pathname;

export const DENO_JSON = new URL("../deno.json", import.meta.url).pathname;

// The target schema as it exists in production: the app's own, TEXT keys.
export const PRODUCTION_DDL = [
  `CREATE TABLE tracks (track_id TEXT PRIMARY KEY, name TEXT NOT NULL, artist_name TEXT NOT NULL,
    album_name TEXT, duration_ms INTEGER, spotify_url TEXT, raw_json JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`,
  `CREATE TABLE snapshots (track_id TEXT NOT NULL REFERENCES tracks(track_id),
    snapshot_date DATE NOT NULL, time_range TEXT NOT NULL, rank INTEGER NOT NULL,
    PRIMARY KEY (track_id, snapshot_date, time_range))`,
];

// --- fixtures ---------------------------------------------------------------

type Value = string | number | bigint | null | Uint8Array;

export interface Track {
  track_id: Value;
  name: Value;
  artist_name: Value;
  album_name: Value;
  duration_ms: Value;
  spotify_url: Value;
  raw_json: Value;
}

export interface Snapshot {
  track_id: Value;
  snapshot_date: Value;
  time_range: Value;
  rank: Value;
}

export function track(id: string, fields: Partial<Track> = {}): Track {
  return {
    track_id: id,
    name: `Song ${id}`,
    artist_name: "Artist",
    album_name: "Album",
    duration_ms: 180000,
    spotify_url: `https://open.spotify.com/track/${id}`,
    raw_json: JSON.stringify({
      id,
      album: { name: "Album", release_date: "2020-02-02" },
      explicit: false,
    }),
    ...fields,
  };
}

export function snapshot(trackId: string, fields: Partial<Snapshot> = {}): Snapshot {
  return {
    track_id: trackId,
    snapshot_date: "2024-03-01",
    time_range: "short_term",
    rank: 1,
    ...fields,
  };
}

export interface SourceShape {
  /** The app's schema has UNIQUE(track_id, snapshot_date, time_range); some copies do not. */
  uniqueSnapshots?: boolean;
  /** Drop NOT NULL and PRIMARY KEY so that bad rows can exist. */
  loose?: boolean;
  wal?: boolean;
}

export function writeSqlite(
  path: string,
  tracks: Track[],
  snapshots: Snapshot[],
  shape: SourceShape = {},
): void {
  const db = new DatabaseSync(path);
  if (shape.wal) db.exec("PRAGMA journal_mode = WAL");
  const notNull = shape.loose ? "" : "NOT NULL";
  // The tutorial's SQLite schema (track_id and the snapshot key as primary
  // keys), plus a created_at column as many apps have added.
  const trackKey = shape.loose ? "" : "PRIMARY KEY NOT NULL";
  const snapshotKey = shape.loose || shape.uniqueSnapshots === false
    ? ""
    : ", PRIMARY KEY (track_id, snapshot_date, time_range)";
  db.exec(`
    CREATE TABLE tracks (track_id TEXT ${trackKey},
      name TEXT ${notNull}, artist_name TEXT ${notNull}, album_name TEXT, duration_ms INTEGER,
      spotify_url TEXT, raw_json TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP);
    CREATE TABLE snapshots (track_id TEXT ${notNull},
      snapshot_date TEXT ${notNull}, time_range TEXT ${notNull}, rank INTEGER ${notNull}
      ${snapshotKey});
  `);
  insertRows(db, tracks, snapshots);
  db.close();
}

export function insertRows(db: DatabaseSync, tracks: Track[], snapshots: Snapshot[]): void {
  db.exec("BEGIN");
  const t = db.prepare(
    `INSERT INTO tracks (track_id, name, artist_name, album_name, duration_ms, spotify_url,
      raw_json) VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const r of tracks) {
    t.run(
      r.track_id,
      r.name,
      r.artist_name,
      r.album_name,
      r.duration_ms,
      r.spotify_url,
      r.raw_json,
    );
  }
  const s = db.prepare(
    "INSERT INTO snapshots (track_id, snapshot_date, time_range, rank) VALUES (?, ?, ?, ?)",
  );
  for (const r of snapshots) s.run(r.track_id, r.snapshot_date, r.time_range, r.rank);
  db.exec("COMMIT");
}

/** Many rows with ~2 KB payloads, so that a run lasts long enough to interrupt. */
export function bulkRows(tracks: number, snapshotsPerTrack: number): [Track[], Snapshot[]] {
  const filler = "x".repeat(2000);
  const ts: Track[] = [];
  const ss: Snapshot[] = [];
  for (let i = 0; i < tracks; i++) {
    const id = `bulk${String(i).padStart(6, "0")}`;
    ts.push(
      track(id, { raw_json: JSON.stringify({ id, album: { release_date: "2021" }, filler }) }),
    );
    for (let d = 0; d < snapshotsPerTrack; d++) {
      ss.push(
        snapshot(id, {
          snapshot_date: `2024-01-${String(d % 28 + 1).padStart(2, "0")}`,
          time_range: ["short_term", "medium_term", "long_term"][Math.floor(d / 28) % 3],
          rank: d + 1,
        }),
      );
    }
  }
  return [ts, ss];
}

export interface Env {
  dir: string;
  sqlitePath: string;
  schema: string;
  sql: postgres.Sql;
  /** Options for migrate() aimed at this test's schema. */
  options: Partial<Options>;
  /** CLI flags aimed at this test's schema. */
  flags: string[];
}

/** A temp dir, a throwaway schema with the production tables, and a client. */
export async function withTarget(
  fn: (env: Env) => Promise<void>,
  { tables = true }: { tables?: boolean } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "migrate_test_" });
  const schema = `test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const sql = postgres(TEST_DATABASE_URL, { max: 2, onnotice: () => {} });
  await sql`CREATE SCHEMA ${sql(schema)}`;
  if (tables) {
    await sql.begin(async (tx) => {
      await tx`SET LOCAL search_path TO ${tx(schema)}`;
      for (const ddl of PRODUCTION_DDL) await tx.unsafe(ddl);
    });
  }
  const sqlitePath = `${dir}/music_time_machine.db`;
  try {
    await fn({
      dir,
      sqlitePath,
      schema,
      sql,
      options: { sqlitePath, databaseUrl: TEST_DATABASE_URL, schema, batchSize: 7 },
      flags: ["--sqlite", sqlitePath, "--database-url", TEST_DATABASE_URL, "--schema", schema],
    });
  } finally {
    await sql`DROP SCHEMA ${sql(schema)} CASCADE`;
    await sql.end();
    await Deno.remove(dir, { recursive: true });
  }
}

export async function targetRows(env: Env) {
  const tracks = await env.sql.unsafe(
    `SELECT track_id, name, artist_name, album_name, duration_ms, spotify_url, raw_json::text,
       jsonb_typeof(raw_json) AS json_type, updated_at
     FROM ${env.schema}.tracks ORDER BY track_id COLLATE "C"`,
  );
  const snapshots = await env.sql.unsafe(
    `SELECT track_id, snapshot_date::text, time_range, rank FROM ${env.schema}.snapshots
     ORDER BY track_id COLLATE "C", snapshot_date, time_range COLLATE "C"`,
  );
  return { tracks, snapshots };
}

export async function counts(env: Env): Promise<[number, number]> {
  const [row] = await env.sql.unsafe(
    `SELECT (SELECT count(*) FROM ${env.schema}.tracks)::int AS t,
            (SELECT count(*) FROM ${env.schema}.snapshots)::int AS s`,
  );
  return [row.t, row.s];
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cliCommand(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", DENO_JSON, MIGRATE_TS, ...args],
    cwd: opts.cwd,
    // As a user runs it from a shell in `cwd`: `deno task test` would pass on
    // its own INIT_CWD, the folder paths and .env are then read from.
    env: { NO_COLOR: "1", INIT_CWD: opts.cwd ?? Deno.cwd(), ...opts.env },
    stdout: "piped",
    stderr: "piped",
  });
}

export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const { code, stdout, stderr } = await cliCommand(args, opts).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

export async function rejectsWith(
  promise: Promise<unknown>,
  kind: MigrationError["kind"],
): Promise<MigrationError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof MigrationError, `expected MigrationError, got ${error}`);
    assert.equal(error.kind, kind, error.message);
    return error;
  }
  assert.fail(`expected a ${kind} error`);
}

/** Every key named in a MigrationError, for assertions. */
export function problemKeys(error: MigrationError): string[] {
  return error.problems.flatMap((g) => g.examples.map((p) => p.key));
}

export const TRICKY_TEXT =
  "comma, \"quotes\" 'single' back\\slash \\N tab\tnew\nline cr\r emoji 🎵🇸🇪 ü";

/**
 * Waits until `count` sessions wait for an advisory lock of this test (its
 * schema's migration lock, or `key`); returns their pids. Other suites may
 * share the server.
 */
export async function waitForLockWaits(env: Env, count: number, key?: number): Promise<number[]> {
  for (let tries = 0; tries < 1500; tries++) {
    const waiting = await env.sql`
      SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = 'migrate.ts'
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.objid::bigint IN (hashtext(${`migrate.ts:${env.schema}`})::bigint & 4294967295,
                                ${key ?? -1}::bigint)
      ORDER BY l.pid`;
    if (waiting.length >= count) return waiting.map((row) => row.pid);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${count} session(s) never came to wait for a lock`);
}

export async function holdSnapshotInserts(env: Env) {
  // A key of this test's own: another suite may hold its gate on the same server.
  const key = 1 + Math.floor(Math.random() * 2 ** 30);
  await env.sql.unsafe(`
    CREATE FUNCTION ${env.schema}.gate() RETURNS trigger LANGUAGE plpgsql
      AS 'BEGIN PERFORM pg_advisory_xact_lock(${key}); RETURN NULL; END';
    CREATE TRIGGER gate BEFORE INSERT ON ${env.schema}.snapshots
      FOR EACH STATEMENT EXECUTE FUNCTION ${env.schema}.gate()`);
  const holder = await env.sql.reserve();
  await holder`SELECT pg_advisory_lock(${key})`;
  let held = true;
  const release = async () => {
    if (!held) return;
    held = false;
    await holder`SELECT pg_advisory_unlock(${key})`;
    holder.release();
  };
  return {
    /** The waiting run's pid; if none comes, the gate opens so that nothing hangs. */
    async waitingPid(): Promise<number> {
      try {
        const [waiting] = await waitForLockWaits(env, 1, key);
        return waiting;
      } catch (error) {
        await release();
        throw error;
      }
    },
    release,
  };
}

// The CLI's environment is cleared below, HOME included (no ~/.pgpass of the
// developer's may count); Deno's own cache must stay where it is.
const DENO_DIR: string = JSON.parse(
  new TextDecoder().decode(
    (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
  ),
).denoDir;

/** The CLI with an environment of exactly these variables (plus PATH, DENO_DIR), in `cwd`. */
export function runCliWith(args: string[], env: Record<string, string>, cwd: string) {
  return runDenoWith(["run", "-A", "--config", DENO_JSON, MIGRATE_TS, ...args], env, cwd);
}

/** `deno task ARGS` run by a user in `cwd`, with exactly these variables (plus PATH, DENO_DIR). */
export function runTaskWith(args: string[], env: Record<string, string>, cwd: string) {
  return runDenoWith(["task", "--quiet", ...args], env, cwd);
}

/** Deno with these arguments in `cwd`, its environment exactly `env` (plus PATH, DENO_DIR, HOME). */
async function runDenoWith(args: string[], env: Record<string, string>, cwd: string) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    clearEnv: true,
    env: { NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "", DENO_DIR, HOME: cwd, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** The tutorial's target (schema_postgres.sql, ../shared/seed/target-schema.md). */
const TUTORIAL_DDL = `
  CREATE TABLE tracks (
    track_id VARCHAR(64) PRIMARY KEY, name TEXT NOT NULL, artist_name TEXT NOT NULL,
    album_name TEXT, duration_ms INTEGER, spotify_url TEXT, raw_json JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW(), updated_at TIMESTAMPTZ DEFAULT NOW());
  CREATE TABLE snapshots (
    track_id VARCHAR(64) REFERENCES tracks(track_id), snapshot_date DATE NOT NULL,
    time_range VARCHAR(32) NOT NULL, rank INTEGER CHECK (rank > 0),
    PRIMARY KEY (track_id, snapshot_date, time_range));
  CREATE INDEX idx_snapshots_date ON snapshots (snapshot_date);
  CREATE INDEX idx_snapshots_track ON snapshots (track_id);
  CREATE INDEX idx_tracks_raw_json ON tracks USING GIN (raw_json);
  COMMENT ON INDEX idx_tracks_raw_json IS 'JSONB look-ups';`;

/** A schema's target tables as the tutorial made them, in place of the production ones. */
export async function tutorialTarget(env: Env, extra = ""): Promise<void> {
  await env.sql.begin(async (tx) => {
    await tx.unsafe(`SET LOCAL search_path TO "${env.schema.replaceAll('"', '""')}"`);
    await tx.unsafe(TUTORIAL_DDL + extra);
  });
}

/** Every index, constraint, trigger and comment of the two tables, for before/after. */
export async function shapeOf(sql: postgres.Sql, schema: string): Promise<string[]> {
  const rows = await sql`
    WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = ${schema} AND c.relname IN ('tracks', 'snapshots'))
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid
           || ' clustered=' || i.indisclustered || ' replica identity=' || i.indisreplident
           || coalesce(' comment=' || obj_description(i.indexrelid, 'pg_class'), '') AS line
    FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM t)
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' '
           || pg_get_constraintdef(oid) || ' validated=' || convalidated
    FROM pg_constraint WHERE conrelid IN (SELECT oid FROM t)
    UNION ALL
    SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM t)
      AND NOT tgisinternal
    ORDER BY 1`;
  return rows.map((row) => row.line);
}

/** Each row's key and xmin: a row rewritten by a later transaction gets a new xmin. */
export async function rowVersions(env: Env): Promise<string[]> {
  const rows = await env.sql.unsafe(
    `SELECT 't ' || track_id || ' ' || xmin::text || ' ' || updated_at::text AS v
     FROM ${env.schema}.tracks
     UNION ALL SELECT 's ' || track_id || snapshot_date || time_range || ' ' || xmin::text
     FROM ${env.schema}.snapshots ORDER BY 1`,
  );
  return rows.map((row) => row.v);
}

/** Printable text that deflate cannot shrink much (the made-ahead buffer deflates what it holds). */
export function incompressible(length: number, seed: number): string {
  let x = seed;
  let text = "";
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    text += String.fromCharCode(0x21 + ((x >>> 0) % 94));
  }
  return text;
}

/** The rows of both tables without updated_at, which records when a row was written. */
export async function contentOf(env: Env) {
  const { tracks, snapshots } = await targetRows(env);
  return { tracks: tracks.map(({ updated_at: _, ...row }) => row), snapshots };
}

/** Every table of the run took `strategy`, and no fast path gave way to the careful one. */
export function assertStrategy(report: Report, strategy: Strategy): void {
  assert.deepEqual(
    { strategies: report.tables.map((t) => t.strategy), carefulBecause: report.carefulBecause },
    { strategies: report.tables.map(() => strategy), carefulBecause: undefined },
  );
}

/** Runs the CLI and calls `when` with each stdout line until it returns true. */
export async function spawnUntil(args: string[], when: (line: string) => boolean) {
  const child = cliCommand(args).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (true) {
    const { value, done } = await lines.read();
    if (done) break;
    seen += value;
    if (seen.split("\n").some(when)) break;
  }
  /** Reads the rest of the output and waits for the exit. */
  const finish = async (): Promise<CliResult> => {
    while (true) {
      const { value, done } = await lines.read();
      if (done) break;
      seen += value;
    }
    const stderr = await new Response(child.stderr).text();
    return { code: (await child.status).code, stdout: seen, stderr };
  };
  return { child, lines, seen: () => seen, finish };
}

/**
 * A login role of its own for one test (a random name: another suite may
 * run on the same server), made with `setup` (ALTER ROLE … SET, GRANTs on
 * the test's schema), dropped afterwards; `url` logs in as it.
 */
export async function withRole(
  env: Env,
  setup: (role: string) => string,
  fn: (role: { name: string; url: string }) => Promise<void>,
): Promise<void> {
  const name = `mtm_t_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const password = crypto.randomUUID();
  await env.sql.unsafe(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`);
  try {
    await env.sql.unsafe(`GRANT USAGE ON SCHEMA ${env.schema} TO ${name}; ${setup(name)}`);
    const url = new URL(TEST_DATABASE_URL);
    url.username = name;
    url.password = password;
    await fn({ name, url: url.href });
  } finally {
    await env.sql.unsafe(`REVOKE ALL ON ALL TABLES IN SCHEMA ${env.schema} FROM ${name};
      REVOKE ALL ON SCHEMA ${env.schema} FROM ${name}`);
    await env.sql.unsafe(`DROP ROLE ${name}`);
  }
}

/** Waits until a session waits for a lock on a table of this test's schema; returns its pid. */
export async function waitForTableLockWait(env: Env): Promise<number> {
  for (let tries = 0; tries < 1500; tries++) {
    const [waiting] = await env.sql`
      SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
        JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE NOT l.granted AND n.nspname = ${env.schema}`;
    if (waiting) return waiting.pid;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no session came to wait for a lock on a table of ${env.schema}`);
}
