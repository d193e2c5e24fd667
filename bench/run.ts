// The benchmark of migrate.ts against two ceilings. For each chosen size and target
// schema it measures, in one run, rotating the order of three blocks each
// iteration (so every block takes every position equally often when --runs is
// a multiple of 3), with the server settled before each timed run (VACUUM
// (ANALYZE) of the bench tables, what autovacuum does after a load, then
// CHECKPOINT): a rerun started while autovacuum works on the tables a first
// run just filled waits for it to yield their lock (deadlock_timeout, 1 s),
// and reads every page to set hint bits, which a rerun days later does not:
//
//   naive ceiling   psql \copy of both tables into the empty target, its keys,
//                   CHECK and indexes in place, server defaults, autocommit;
//   tuned ceiling   what a careful DBA does by hand, in one psql session and one
//                   transaction (psql -1): SET LOCAL default_toast_compression =
//                   lz4, work_mem and maintenance_work_mem = 256MB, primary and
//                   foreign keys and secondary indexes dropped before \copy and
//                   re-created after (keys and indexes first, foreign keys last);
//   migrate.ts      the exact command `deno task migrate` runs, with --sqlite,
//                   --database-url, --schema and --json: the first run into the
//                   empty target, then a rerun over unchanged data (0 rows
//                   rewritten, asserted from the report and from PostgreSQL's
//                   own xmin), then a rerun with --prune over a copy of the
//                   SQLite file where 1 % of each table changed (a third
//                   updated, a third inserted, a third deleted; deleting a
//                   track deletes its snapshots, which count towards the
//                   snapshots' deletions). The unchanged rerun writes nothing,
//                   so the 1 % rerun always starts from the first run's state
//                   without a restore. Its report must match the changes made.
//
// Every run gets its wall time, the client's peak RSS (/usr/bin/time -v) and
// the server's temp-file bytes (delta of pg_stat_database.temp_bytes). A
// backend flushes its statistics at exit before it leaves pg_stat_activity
// (PostgreSQL 15+: pgstat's before_shmem_exit hook runs before the backend
// status entry is cleared), so the bench tags each run with its own
// application_name and reads temp_bytes once no backend with that name is
// left: a known point, no sleeping. Where the time goes: migrate.ts's steps
// as they appear on its stderr, timestamped on arrival, and the tuned
// ceiling's statements from psql's \timing.
//
// The ceilings and migrate.ts read the same input: the COPY text files are
// exported straight from the SQLite file (node:sqlite, every SQLite column,
// COPY text format encoded here), not from a PostgreSQL copy.
//
//   deno task bench [small|medium|large ...] [--runs N] [--schema plain|tutorial|both]
//
// Target schemas: `plain` (TEXT keys, no secondary indexes) and `tutorial`
// (the tutorial's schema_postgres.sql, ../shared/seed/target-schema.md:
// VARCHAR keys, CHECK (rank > 0), timestamps, the foreign key, B-tree indexes
// and a GIN index on raw_json). Both have created_at, which SQLite supplies.
//
// Requirements: psql (15+), GNU time at /usr/bin/time, PostgreSQL 15+ with
// lz4. CHECKPOINT needs superuser or pg_checkpoint: run once
//   su postgres -c "psql -c 'GRANT pg_checkpoint TO mtm'"
// (without it the bench runs CHECKPOINT through `su postgres -c psql` when it
// runs as root on the database's host, else it skips CHECKPOINT and says so).
// Target: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the tests'
// default. It drops and recreates the schemas bench_plain and bench_tutorial
// there. Data sets and exports are kept in bench/data (git-ignored).
import { createTableDdl, TABLES as TABLE_SPECS } from "../src/tables.ts";
import { parseArgs } from "node:util";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import { generate, type Size, SIZES } from "../tools/generate.ts";

const URL_ = Deno.env.get("BENCH_DATABASE_URL") ?? Deno.env.get("TEST_DATABASE_URL") ??
  "postgresql://mtm:mtm-test-pw@localhost:5432/mtm_test";
const ROOT = new URL("..", import.meta.url).pathname;
const DATA = `${ROOT}bench/data`;
const TABLES = ["tracks", "snapshots"] as const;
type Table = typeof TABLES[number];
const MiB = 1024 * 1024;

/** The target schemas: DDL run inside the (empty) schema. */
const SCHEMAS = {
  plain: `
    CREATE TABLE tracks (track_id TEXT PRIMARY KEY, name TEXT NOT NULL, artist_name TEXT NOT NULL,
      album_name TEXT, duration_ms INTEGER, spotify_url TEXT, raw_json JSONB,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW());
    CREATE TABLE snapshots (track_id TEXT NOT NULL REFERENCES tracks(track_id),
      snapshot_date DATE NOT NULL, time_range TEXT NOT NULL, rank INTEGER NOT NULL,
      PRIMARY KEY (track_id, snapshot_date, time_range));`,
  // The tutorial's tables exactly as --create-schema makes them.
  tutorial: TABLE_SPECS.flatMap(createTableDdl).join(";\n"),
} as const;
type SchemaName = keyof typeof SCHEMAS;

/** The speed targets (large; medium may be 0.1 above each; small is start-up bound). */
const TARGETS = {
  plain: [
    { label: "first run / tuned ceiling", run: "first", base: "tuned", max: 1.25 },
    { label: "unchanged rerun / first run", run: "unchanged", base: "first", max: 0.35 },
    { label: "1 % rerun / first run", run: "changed", base: "first", max: 0.45 },
  ],
  tutorial: [
    { label: "first run / naive ceiling", run: "first", base: "naive", max: 0.7 },
  ],
} as const;

/** Share of each table changed before the 1 % rerun, split evenly over updates, inserts, deletes. */
const CHANGED_SHARE = 0.01;
/** Ranks per day and time range, as tools/generate.ts writes them. */
const TOP = 50;
/** Existing tracks the 1 % rerun's new snapshots may rank, after the new tracks. */
const RANKED_POOL = 2_000;

const RUNS = ["naive", "tuned", "first", "unchanged", "changed"] as const;
type RunName = typeof RUNS[number];
const RUN_TITLES: Record<RunName, string> = {
  naive: "psql \\copy (naive ceiling)",
  tuned: "psql -1 \\copy, keys after (tuned ceiling)",
  first: "migrate.ts first run",
  unchanged: "migrate.ts rerun, unchanged",
  changed: "migrate.ts rerun, 1 % changed, --prune",
};

interface Measurement {
  seconds: number;
  rssMiB: number;
  tempMiB: number | null;
  /** Seconds per phase (migrate's steps, the tuned ceiling's statements). */
  phases: Map<string, number>;
}

const args = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    runs: { type: "string", default: "3" },
    schema: { type: "string", default: "both" },
  },
});
const sizes = (args.positionals.length ? args.positionals : ["medium"]) as Size[];
const runs = Number(args.values.runs);
for (const size of sizes) {
  if (!(size in SIZES)) throw new Error(`unknown size ${size}; use small, medium or large`);
}
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a positive integer");
const schemaArg = args.values.schema!;
if (!["plain", "tutorial", "both"].includes(schemaArg)) {
  throw new Error("--schema must be plain, tutorial or both");
}
const schemas: SchemaName[] = schemaArg === "both" ? ["plain", "tutorial"] : [
  schemaArg as SchemaName,
];

const sql = postgres(URL_, { max: 1, onnotice: () => {} });
const pgSchema = (schema: SchemaName) => `bench_${schema}`;

async function resetTarget(schema: SchemaName): Promise<void> {
  const name = pgSchema(schema);
  await sql.unsafe(`DROP SCHEMA IF EXISTS ${name} CASCADE; CREATE SCHEMA ${name};
    SET search_path TO ${name}; ${SCHEMAS[schema]} RESET search_path;`);
}

// --- CHECKPOINT before each timed run -------------------------------------

type Checkpoint = () => Promise<void>;

/** CHECKPOINT as ourselves (pg_checkpoint), else through `su postgres`, else not at all. */
/** VACUUM (ANALYZE) of every bench table: returns once autovacuum has nothing left to do there. */
async function vacuumBenchTables(): Promise<void> {
  const tables = await sql`SELECT format('%I.%I', schemaname, relname) AS name
    FROM pg_stat_user_tables WHERE schemaname LIKE 'bench\_%'`;
  for (const { name } of tables) await sql.unsafe(`VACUUM (ANALYZE) ${name}`);
}

async function chooseCheckpoint(): Promise<{ checkpoint: Checkpoint; note: string }> {
  try {
    await sql`CHECKPOINT`;
    return { checkpoint: async () => void await sql`CHECKPOINT`, note: "CHECKPOINT as the user" };
  } catch (error) {
    if ((error as { code?: string }).code !== "42501") throw error;
  }
  const [{ db }] = await sql`SELECT current_database() AS db`;
  const viaSu = async () => {
    const out = await new Deno.Command("su", {
      args: ["postgres", "-c", `psql -X -q -d '${db}' -c CHECKPOINT`],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
  };
  try {
    if (Deno.uid() === 0) {
      await viaSu();
      return { checkpoint: viaSu, note: "CHECKPOINT through su postgres (no pg_checkpoint)" };
    }
  } catch {
    // Not the database's host, or no postgres account: fall through.
  }
  const note = "CHECKPOINT SKIPPED: grant pg_checkpoint to the bench's user " +
    "(su postgres -c \"psql -c 'GRANT pg_checkpoint TO mtm'\")";
  console.error(`note: ${note}`);
  return { checkpoint: async () => {}, note };
}

// --- the same input, straight from SQLite ---------------------------------

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function ensureData(size: Size): string {
  Deno.mkdirSync(DATA, { recursive: true });
  const db = `${DATA}/${size}.db`;
  if (!exists(db)) {
    console.error(`generating ${size} data set…`);
    generate(size, db);
  }
  return db;
}

const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
};
const COPY_SPECIAL = /[\\\t\n\r]/g;

/** One value in PostgreSQL's COPY text format: \N for NULL, backslash escapes. */
function copyValue(value: unknown): string {
  if (value === null || value === undefined) return "\\N";
  if (typeof value === "string") return value.replace(COPY_SPECIAL, (c) => COPY_ESCAPES[c]);
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  throw new Error(`cannot export a ${typeof value} as COPY text`);
}

interface Export {
  columns: Record<Table, string[]>;
  files: Record<Table, string>;
}

/** Exports every column of both tables from the SQLite file as COPY text files. */
function exportCopyText(db: string, size: Size): Export {
  const source = new DatabaseSync(db, { readOnly: true });
  const columns = {} as Record<Table, string[]>;
  const files = {} as Record<Table, string>;
  const encoder = new TextEncoder();
  for (const table of TABLES) {
    columns[table] = source.prepare(`SELECT name FROM pragma_table_info('${table}') ORDER BY cid`)
      .all().map((r) => String(r.name));
    files[table] = `${DATA}/${size}.${table}.copy`;
    const file = Deno.openSync(files[table], { write: true, create: true, truncate: true });
    let chunk = "";
    const select = source.prepare(
      `SELECT ${columns[table].map((c) => `"${c}"`).join(", ")} FROM ${table}`,
    );
    for (const row of select.iterate()) {
      chunk += columns[table].map((c) => copyValue(row[c])).join("\t") + "\n";
      if (chunk.length > MiB) {
        file.writeSync(encoder.encode(chunk));
        chunk = "";
      }
    }
    file.writeSync(encoder.encode(chunk));
    file.close();
  }
  source.close();
  return { columns, files };
}

// --- the 1 % changed copy --------------------------------------------------

type Changes = Record<Table, { inserted: number; updated: number; pruned: number }>;

/** Evenly spaced picks from a list, deterministic. */
function spread<T>(items: T[], n: number): T[] {
  return Array.from(
    { length: Math.min(n, items.length) },
    (_, i) => items[Math.floor(i * items.length / n)],
  );
}

/** Copies the SQLite file and changes 1 % of each table; returns what the rerun must report. */
function makeChangedCopy(db: string, size: Size): { path: string; changes: Changes } {
  const path = `${DATA}/${size}.changed.db`;
  for (const suffix of ["", "-wal", "-shm"]) {
    if (exists(path + suffix)) Deno.removeSync(path + suffix);
  }
  const source = new DatabaseSync(db, { readOnly: true });
  source.exec(`VACUUM INTO '${path.replaceAll("'", "''")}'`);
  source.close();
  const target = new DatabaseSync(path);
  target.exec("BEGIN");
  const { tracks, snapshots } = SIZES[size];
  const third = (rows: number) => Math.round(rows * CHANGED_SHARE / 3);
  const count = (sqlText: string) => Number(target.prepare(sqlText).get()!.n);

  // Tracks: every other evenly spaced track is updated, the rest deleted.
  const ids = target.prepare("SELECT track_id FROM tracks ORDER BY track_id").all()
    .map((r) => String(r.track_id));
  const picked = spread(ids, 2 * third(tracks));
  const updatedTracks = picked.filter((_, i) => i % 2 === 0);
  const deletedTracks = picked.filter((_, i) => i % 2 === 1);
  const getTrack = target.prepare("SELECT * FROM tracks WHERE track_id = ?");
  const updateTrack = target.prepare("UPDATE tracks SET name = ?, raw_json = ? WHERE track_id = ?");
  for (const id of updatedTracks) {
    const row = getTrack.get(id)!;
    const payload = JSON.parse(String(row.raw_json));
    const name = `${row.name} (2026 Remaster)`;
    payload.name = name;
    payload.popularity = (Number(payload.popularity ?? 0) + 1) % 100;
    updateTrack.run(name, JSON.stringify(payload), id);
  }
  const deleteSnapshotsOf = target.prepare("DELETE FROM snapshots WHERE track_id = ?");
  const deleteTrack = target.prepare("DELETE FROM tracks WHERE track_id = ?");
  let prunedSnapshots = 0;
  for (const id of deletedTracks) {
    prunedSnapshots += Number(deleteSnapshotsOf.run(id).changes);
    deleteTrack.run(id);
  }
  const newIds = Array.from(
    { length: third(tracks) },
    (_, i) => `BenchNew${String(i).padStart(14, "0")}`,
  );
  const insertTrack = target.prepare(
    `INSERT INTO tracks (track_id, name, artist_name, album_name, duration_ms, spotify_url, raw_json)
     SELECT ?, name || ' (live)', artist_name, album_name, duration_ms, ?, ? FROM tracks
     WHERE track_id = ?`,
  );
  const gone = new Set(deletedTracks);
  const kept = ids.filter((id) => !gone.has(id));
  const templates = spread(kept, newIds.length);
  newIds.forEach((id, i) => {
    const payload = JSON.parse(String(getTrack.get(templates[i])!.raw_json));
    const url = `https://open.spotify.com/track/${id}`;
    Object.assign(payload, {
      id,
      name: `${payload.name} (live)`,
      uri: `spotify:track:${id}`,
      href: `https://api.spotify.com/v1/tracks/${id}`,
      external_urls: { spotify: url },
    });
    insertTrack.run(id, url, JSON.stringify(payload), templates[i]);
  });

  // Snapshots: the deleted tracks' snapshots, topped up to a third; a third
  // re-ranked; a third inserted on new days (new tracks first).
  const rowids = () =>
    target.prepare("SELECT rowid FROM snapshots ORDER BY rowid").all().map((r) => Number(r.rowid));
  const deleteRow = target.prepare("DELETE FROM snapshots WHERE rowid = ?");
  for (const rowid of spread(rowids(), third(snapshots) - prunedSnapshots)) {
    prunedSnapshots += Number(deleteRow.run(rowid).changes);
  }
  const rerank = target.prepare("UPDATE snapshots SET rank = rank + 100 WHERE rowid = ?");
  let updatedSnapshots = 0;
  for (const rowid of spread(rowids(), third(snapshots))) {
    updatedSnapshots += Number(rerank.run(rowid).changes);
  }
  const lastDay = String(target.prepare("SELECT max(snapshot_date) AS d FROM snapshots").get()!.d);
  const ranges = target.prepare("SELECT DISTINCT time_range FROM snapshots ORDER BY 1").all()
    .map((r) => String(r.time_range));
  const pool = [...newIds, ...spread(kept, RANKED_POOL)];
  const insertSnapshot = target.prepare(
    "INSERT INTO snapshots (track_id, snapshot_date, time_range, rank) VALUES (?, ?, ?, ?)",
  );
  const wanted = third(snapshots);
  let insertedSnapshots = 0;
  for (let day = 1; insertedSnapshots < wanted; day++) {
    const date = new Date(Date.parse(`${lastDay}T00:00:00Z`) + day * 86_400_000)
      .toISOString().slice(0, 10);
    for (const range of ranges) {
      for (let rank = 1; rank <= TOP && insertedSnapshots < wanted; rank++) {
        const id = pool[(day * TOP + rank - 1) % pool.length];
        insertSnapshot.run(id, date, range, rank);
        insertedSnapshots++;
      }
    }
  }
  target.exec("COMMIT");
  const check = count("SELECT count(*) AS n FROM snapshots") ===
    snapshots - prunedSnapshots + insertedSnapshots;
  target.close();
  if (!check) throw new Error("the changed copy's snapshot count is off");
  return {
    path,
    changes: {
      tracks: {
        inserted: newIds.length,
        updated: updatedTracks.length,
        pruned: deletedTracks.length,
      },
      snapshots: {
        inserted: insertedSnapshots,
        updated: updatedSnapshots,
        pruned: prunedSnapshots,
      },
    },
  };
}

// --- timed runs ------------------------------------------------------------

let runCounter = 0;

async function tempBytes(): Promise<bigint> {
  await sql`SELECT pg_stat_clear_snapshot()`;
  const [{ bytes }] = await sql`
    SELECT temp_bytes::text AS bytes FROM pg_stat_database WHERE datname = current_database()`;
  return BigInt(bytes);
}

/** Waits until no backend of this run is left: by then its statistics are flushed. */
async function backendsGone(appName: string): Promise<boolean> {
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const [{ n }] = await sql`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${appName}`;
    if (n === 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

/**
 * Runs a command under /usr/bin/time -v with its own application_name, after a
 * CHECKPOINT: wall time, peak RSS, temp bytes, and its stderr lines with the
 * second each arrived at.
 */
async function timed(
  cmd: string[],
  checkpoint: Checkpoint,
): Promise<Measurement & { stdout: string; lines: [number, string][] }> {
  const appName = `mtm-bench-${Deno.pid}-${++runCounter}`;
  await vacuumBenchTables();
  await checkpoint();
  const tempBefore = await tempBytes();
  const started = performance.now();
  const child = new Deno.Command("/usr/bin/time", {
    args: ["-v", ...cmd],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", PGAPPNAME: appName },
  }).spawn();
  const lines: [number, string][] = [];
  const readErr = (async () => {
    let rest = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      const now = (performance.now() - started) / 1000;
      const parts = (rest + text).split(/[\r\n]/);
      rest = parts.pop()!;
      for (const line of parts) if (line) lines.push([now, line]);
    }
    if (rest) lines.push([(performance.now() - started) / 1000, rest]);
  })();
  const [status, stdout] = await Promise.all([child.status, new Response(child.stdout).text()]);
  await readErr;
  const seconds = (performance.now() - started) / 1000;
  const stderr = lines.map(([, l]) => l).join("\n");
  if (!status.success) throw new Error(`${cmd.join(" ")} failed:\n${stderr}\n${stdout}`);
  const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1]);
  const tempMiB = await backendsGone(appName) ? Number(await tempBytes() - tempBefore) / MiB : null;
  return { seconds, rssMiB: kb / 1024, tempMiB, phases: new Map(), stdout, lines };
}

const SCRIPT = `${DATA}/script-${Deno.pid}.sql`;
const psqlBase = () => ["psql", URL_, "-X", "-q", "-v", "ON_ERROR_STOP=1"];
const quoteLiteral = (text: string) => `'${text.replaceAll("'", "''")}'`;
const copyFrom = (table: Table, input: Export) =>
  `\\copy ${table} (${input.columns[table].join(", ")}) FROM ${quoteLiteral(input.files[table])}`;

/** A psql script: statements with phase labels; \timing gives each one's time. */
async function psqlScript(
  steps: [string, string][],
  oneTransaction: boolean,
  checkpoint: Checkpoint,
): Promise<Measurement> {
  const body = steps.map(([, statement]) =>
    statement.startsWith("\\") ? statement : `${statement};`
  );
  Deno.writeTextFileSync(SCRIPT, ["\\timing on", ...body, ""].join("\n"));
  const result = await timed(
    [...psqlBase(), ...(oneTransaction ? ["-1"] : []), "-f", SCRIPT],
    checkpoint,
  );
  const times = [...result.stdout.matchAll(/^Time: ([\d.]+) ms/gm)].map((m) => Number(m[1]));
  if (times.length !== steps.length) {
    throw new Error(`psql printed ${times.length} timings for ${steps.length} statements`);
  }
  steps.forEach(([label], i) =>
    result.phases.set(label, (result.phases.get(label) ?? 0) + times[i] / 1000)
  );
  return result;
}

function naiveCeiling(schema: SchemaName, input: Export, checkpoint: Checkpoint) {
  return psqlScript(
    [
      ["settings", `SET search_path TO ${pgSchema(schema)}`],
      ["settings", "SET TimeZone TO 'UTC'"],
      ["copy tracks", copyFrom("tracks", input)],
      ["copy snapshots", copyFrom("snapshots", input)],
    ],
    false,
    checkpoint,
  );
}

interface Ddl {
  table: string;
  name: string;
  kind: "p" | "u" | "f" | "index";
  definition: string;
}

/** The target's keys and secondary indexes, from the catalog, to drop and re-create. */
async function keysAndIndexes(schema: SchemaName): Promise<Ddl[]> {
  const constraints = await sql<Ddl[]>`
    SELECT quote_ident(c.relname) AS table, quote_ident(k.conname) AS name, k.contype AS kind,
      pg_get_constraintdef(k.oid) AS definition
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
    WHERE k.connamespace = ${pgSchema(schema)}::regnamespace AND k.contype IN ('p', 'u', 'f')
    ORDER BY k.contype, k.conname`;
  const indexes = await sql<Ddl[]>`
    SELECT quote_ident(t.relname) AS table, quote_ident(i.relname) AS name, 'index' AS kind,
      pg_get_indexdef(i.oid) AS definition
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
    WHERE i.relnamespace = ${pgSchema(schema)}::regnamespace
      AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.oid)
    ORDER BY i.relname`;
  return [...constraints, ...indexes];
}

function tunedCeiling(schema: SchemaName, input: Export, ddl: Ddl[], checkpoint: Checkpoint) {
  const foreign = ddl.filter((d) => d.kind === "f");
  const keys = ddl.filter((d) => d.kind === "p" || d.kind === "u");
  const indexes = ddl.filter((d) => d.kind === "index");
  const label = (d: Ddl) =>
    d.kind === "f" ? "foreign keys" : d.kind === "index" ? `index ${d.name}` : `key ${d.name}`;
  return psqlScript(
    [
      ["settings", `SET LOCAL search_path TO ${pgSchema(schema)}`],
      ["settings", "SET LOCAL TimeZone TO 'UTC'"],
      ["settings", "SET LOCAL default_toast_compression = lz4"],
      ["settings", "SET LOCAL work_mem = '256MB'"],
      ["settings", "SET LOCAL maintenance_work_mem = '256MB'"],
      ...[...foreign, ...keys].map((d): [string, string] => [
        "drop keys and indexes",
        `ALTER TABLE ${d.table} DROP CONSTRAINT ${d.name}`,
      ]),
      ...indexes.map((d): [string, string] => ["drop keys and indexes", `DROP INDEX ${d.name}`]),
      ["copy tracks", copyFrom("tracks", input)],
      ["copy snapshots", copyFrom("snapshots", input)],
      ...keys.map((d): [string, string] => [
        label(d),
        `ALTER TABLE ${d.table} ADD CONSTRAINT ${d.name} ${d.definition}`,
      ]),
      ...indexes.map((d): [string, string] => [label(d), d.definition]),
      ...foreign.map((d): [string, string] => [
        label(d),
        `ALTER TABLE ${d.table} ADD CONSTRAINT ${d.name} ${d.definition}`,
      ]),
    ],
    true,
    checkpoint,
  );
}

/** Exactly the command `deno task migrate` runs, with absolute paths. */
function migrateCommand(): string[] {
  const task: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks.migrate;
  return task.split(" ").map((word, i) =>
    i === 0 ? Deno.execPath() : word === "migrate.ts" ? `${ROOT}migrate.ts` : word
  );
}

interface TableReport {
  table: Table;
  inserted: number;
  updated: number;
  pruned: number;
  seconds: number;
}

/** migrate.ts's steps as printed on stderr; each phase lasts until the next one. */
const STEP =
  /^(reading|comparing|writing|pruning|verifying|indexing|staging|the fast path stopped)\b(?: (?:the )?(tracks|snapshots))?/;
const STEP_LABELS: Record<string, string> = {
  reading: "read+stage",
  comparing: "compare",
  writing: "write",
  pruning: "prune",
  verifying: "verify",
  indexing: "index",
  staging: "stage",
  "the fast path stopped": "fast path stopped",
};

async function migrateRun(
  schema: SchemaName,
  db: string,
  checkpoint: Checkpoint,
  extra: string[] = [],
): Promise<Measurement & { report: { tables: TableReport[]; seconds: number } }> {
  const result = await timed([
    ...migrateCommand(),
    "--sqlite",
    db,
    "--database-url",
    URL_,
    "--schema",
    pgSchema(schema),
    "--json",
    ...extra,
  ], checkpoint);
  const report = JSON.parse(result.stdout);
  if (!report.ok || !report.committed) throw new Error(`migration failed: ${result.stdout}`);
  const steps = result.lines.filter(([, line]) => STEP.test(line));
  let previous: [number, string] = [0, "start-up"];
  for (const step of [...steps, [result.seconds, ""] as [number, string]]) {
    const [, word, table] = STEP.exec(previous[1]) ?? [, "", ""];
    const name = word ? [STEP_LABELS[word], table].filter(Boolean).join(" ") : previous[1];
    result.phases.set(name, (result.phases.get(name) ?? 0) + step[0] - previous[0]);
    previous = step;
  }
  return { ...result, report };
}

/** Rows whose current version was written after `since` (a transaction id). */
async function rowsWrittenSince(schema: SchemaName, since: bigint): Promise<number> {
  const name = pgSchema(schema);
  const [{ n }] = await sql.unsafe(
    `SELECT ((SELECT count(*) FROM ${name}.tracks WHERE xmin::text::bigint >= $1) +
             (SELECT count(*) FROM ${name}.snapshots WHERE xmin::text::bigint >= $1))::int AS n`,
    [String(since % 4294967296n)],
  );
  return n;
}

async function assertLoaded(schema: SchemaName, size: Size): Promise<void> {
  for (const table of TABLES) {
    const [{ n }] = await sql.unsafe(`SELECT count(*)::int AS n FROM ${pgSchema(schema)}.${table}`);
    if (n !== SIZES[size][table]) throw new Error(`${schema}.${table} holds ${n} rows after load`);
  }
}

function assertReport(what: string, tables: TableReport[], expected: Changes): void {
  for (const t of tables) {
    const want = expected[t.table];
    const got = { inserted: t.inserted, updated: t.updated, pruned: t.pruned };
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new Error(
        `${what}: ${t.table} reported ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`,
      );
    }
  }
}

// --- summary ---------------------------------------------------------------

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const range = (values: number[], digits = 1) =>
  `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;

type Results = Record<RunName, Measurement[]>;

/** Per iteration ratio (runs of one iteration ran next to each other), then the median. */
function ratios(results: Results, run: RunName, base: RunName): number[] {
  return results[run].map((m, i) => m.seconds / results[base][i].seconds);
}

function table(size: Size, schema: SchemaName, results: Results, changes: Changes): string {
  const out = [
    `### ${schema} schema, ${size} (${SIZES[size].tracks} tracks, ${
      SIZES[size].snapshots
    } snapshots), ${runs} run(s)`,
    "",
    "| run | wall s median | range | × naive | × tuned | × first run | peak RSS MiB median / max | temp MiB median / max |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const run of RUNS) {
    const ms = results[run];
    const seconds = ms.map((m) => m.seconds);
    const rss = ms.map((m) => m.rssMiB);
    const temps = ms.map((m) => m.tempMiB);
    const temp = temps.includes(null)
      ? "n/a (stats not flushed)"
      : `${median(temps as number[]).toFixed(0)} / ${Math.max(...temps as number[]).toFixed(0)}`;
    const ratio = (base: RunName) =>
      run === base ? "1.00×" : `${median(ratios(results, run, base)).toFixed(2)}×`;
    out.push(
      `| ${RUN_TITLES[run]} | ${median(seconds).toFixed(2)} | ${range(seconds, 2)} | ${
        ratio("naive")
      } | ${ratio("tuned")} | ${
        ["first", "unchanged", "changed"].includes(run) ? ratio("first") : ""
      } | ${median(rss).toFixed(0)} / ${Math.max(...rss).toFixed(0)} | ${temp} |`,
    );
  }
  const slack = size === "large" ? 0 : 0.1;
  out.push("", "Targets (large; medium may be 0.1 above; ratios paired per run):");
  for (const t of TARGETS[schema]) {
    const values = ratios(results, t.run, t.base);
    const limit = t.max + slack;
    const verdict = size === "small"
      ? "informational (small is start-up bound)"
      : median(values) <= limit
      ? "met"
      : "NOT met";
    out.push(
      `- ${t.label}: ${median(values).toFixed(2)}× (range ${range(values, 2)}), target ≤ ${
        limit.toFixed(2)
      }×: ${verdict}`,
    );
  }
  const c = changes;
  out.push(
    `- 1 % rerun changed tracks +${c.tracks.inserted} ~${c.tracks.updated} -${c.tracks.pruned}, ` +
      `snapshots +${c.snapshots.inserted} ~${c.snapshots.updated} -${c.snapshots.pruned} ` +
      "(inserted ~updated -pruned; the report matched in every run); the unchanged rerun " +
      "rewrote 0 rows in every run (report and xmin)",
    "",
    "Where the time goes (median seconds per phase; migrate.ts: its steps on stderr, " +
      "'start-up' is Deno, connecting and planning; the last phase includes COMMIT and exit; " +
      "tuned ceiling: psql \\timing per statement):",
    "",
  );
  for (const run of ["tuned", "first", "unchanged", "changed"] as const) {
    const names = [...new Set(results[run].flatMap((m) => [...m.phases.keys()]))];
    const parts = names.map((name) =>
      `${name} ${median(results[run].map((m) => m.phases.get(name) ?? 0)).toFixed(2)}`
    );
    out.push(`- ${RUN_TITLES[run]}: ${parts.join(", ")}`);
  }
  return out.join("\n");
}

// --- main ------------------------------------------------------------------

const { checkpoint, note } = await chooseCheckpoint();
const summary: string[] = [];
for (const size of sizes) {
  const db = ensureData(size);
  console.error(`${size}: exporting COPY text from SQLite and making the 1 % changed copy…`);
  const input = exportCopyText(db, size);
  const changed = makeChangedCopy(db, size);
  const none: Changes = {
    tracks: { inserted: 0, updated: 0, pruned: 0 },
    snapshots: { inserted: 0, updated: 0, pruned: 0 },
  };
  for (const schema of schemas) {
    await resetTarget(schema);
    const ddl = await keysAndIndexes(schema);
    const results: Results = { naive: [], tuned: [], first: [], unchanged: [], changed: [] };
    const blocks: Record<string, () => Promise<void>> = {
      naive: async () => {
        await resetTarget(schema);
        results.naive.push(await naiveCeiling(schema, input, checkpoint));
        await assertLoaded(schema, size);
      },
      tuned: async () => {
        await resetTarget(schema);
        results.tuned.push(await tunedCeiling(schema, input, ddl, checkpoint));
        await assertLoaded(schema, size);
        const after = await keysAndIndexes(schema);
        if (JSON.stringify(after) !== JSON.stringify(ddl)) {
          throw new Error("the tuned ceiling did not restore every key and index");
        }
      },
      migrate: async () => {
        await resetTarget(schema);
        results.first.push(await migrateRun(schema, db, checkpoint));
        await assertLoaded(schema, size);
        const [{ xid }] = await sql`SELECT txid_current()::text AS xid`;
        const rerun = await migrateRun(schema, db, checkpoint);
        assertReport("unchanged rerun", rerun.report.tables, none);
        const written = await rowsWrittenSince(schema, BigInt(xid));
        if (written !== 0) throw new Error(`unchanged rerun rewrote ${written} rows`);
        results.unchanged.push(rerun);
        const changedRun = await migrateRun(schema, changed.path, checkpoint, ["--prune"]);
        assertReport("1 % rerun", changedRun.report.tables, changed.changes);
        results.changed.push(changedRun);
      },
    };
    const order = ["naive", "tuned", "migrate"];
    for (let i = 0; i < runs; i++) {
      const rotated = [...order.slice(i % 3), ...order.slice(0, i % 3)];
      for (const block of rotated) await blocks[block]();
      console.error(
        `${schema} ${size} run ${i + 1}/${runs} (${rotated.join(", ")}): ${
          RUNS.map((r) => `${r} ${results[r].at(-1)!.seconds.toFixed(1)}s`).join(", ")
        }`,
      );
    }
    summary.push(table(size, schema, results, changed.changes));
  }
}
for (const schema of schemas) await sql.unsafe(`DROP SCHEMA IF EXISTS ${pgSchema(schema)} CASCADE`);
if (exists(SCRIPT)) Deno.removeSync(SCRIPT);
await sql.end();

console.log(
  `\n${note}; order rotated over naive, tuned, migrate.ts blocks; ` +
    `within the migrate.ts block: first run, unchanged rerun, 1 % rerun\n`,
);
console.log(summary.join("\n\n"));
