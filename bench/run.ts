// The benchmark of issue #4: for each chosen size, in one run and alternating
// order, time `psql \copy` of the same rows into empty tables (the ceiling),
// the first migration, and a rerun over unchanged data; record each one's peak
// RSS with /usr/bin/time; print medians and ratios to the ceiling.
//
//   deno task bench [small|medium|large ...] [--runs N]
//
// Target: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the tests' default.
// It drops and recreates the schema `bench` there.
import { parseArgs } from "node:util";
import postgres from "postgres";
import { generate, type Size, SIZES } from "./generate.ts";

const URL_ = Deno.env.get("BENCH_DATABASE_URL") ?? Deno.env.get("TEST_DATABASE_URL") ??
  "postgresql://mtm:mtm-test-pw@localhost:5432/mtm_test";
const SCHEMA = "bench";
const ROOT = new URL("..", import.meta.url).pathname;
const DATA = `${ROOT}bench/data`;
const COLUMNS = {
  tracks: "track_id, name, artist_name, album_name, duration_ms, spotify_url, raw_json",
  snapshots: "track_id, snapshot_date, time_range, rank",
};
const DDL = `
  CREATE TABLE tracks (track_id TEXT PRIMARY KEY, name TEXT NOT NULL, artist_name TEXT NOT NULL,
    album_name TEXT, duration_ms INTEGER, spotify_url TEXT, raw_json JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW());
  CREATE TABLE snapshots (track_id TEXT NOT NULL REFERENCES tracks(track_id),
    snapshot_date DATE NOT NULL, time_range TEXT NOT NULL, rank INTEGER NOT NULL,
    PRIMARY KEY (track_id, snapshot_date, time_range));`;

interface Measurement {
  seconds: number;
  rssMiB: number;
}

const args = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { runs: { type: "string", default: "3" } },
});
const sizes = (args.positionals.length ? args.positionals : ["medium"]) as Size[];
const runs = Number(args.values.runs);
for (const size of sizes) {
  if (!(size in SIZES)) throw new Error(`unknown size ${size}; use small, medium or large`);
}

const sql = postgres(URL_, { max: 1, onnotice: () => {} });

async function resetTarget(): Promise<void> {
  await sql.unsafe(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; CREATE SCHEMA ${SCHEMA};
    SET search_path TO ${SCHEMA}; ${DDL} RESET search_path;`);
}

/** Runs a command under /usr/bin/time -v; returns wall time and peak RSS, and stdout. */
async function timed(cmd: string[]): Promise<Measurement & { stdout: string }> {
  const started = performance.now();
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-v", ...cmd],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const seconds = (performance.now() - started) / 1000;
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`${cmd.join(" ")} failed:\n${stderr}`);
  const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1]);
  return { seconds, rssMiB: kb / 1024, stdout: new TextDecoder().decode(out.stdout) };
}

function ensureData(size: Size): { db: string; tsv: Record<string, string> } {
  Deno.mkdirSync(DATA, { recursive: true });
  const db = `${DATA}/${size}.db`;
  try {
    Deno.statSync(db);
  } catch {
    console.error(`generating ${size} data set…`);
    generate(size, db);
  }
  return {
    db,
    tsv: { tracks: `${DATA}/${size}.tracks.tsv`, snapshots: `${DATA}/${size}.snapshots.tsv` },
  };
}

/** The same rows as COPY text files, for the psql \copy ceiling (made with psql from a staged copy). */
async function ensureTsv(size: Size, db: string, tsv: Record<string, string>): Promise<void> {
  try {
    Deno.statSync(tsv.snapshots);
    return;
  } catch {
    console.error(`exporting ${size} as COPY text for psql…`);
  }
  await resetTarget();
  await migrateRun(db);
  for (const table of ["tracks", "snapshots"] as const) {
    const out = await new Deno.Command("psql", {
      args: [
        URL_,
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        `\\copy (SELECT ${COLUMNS[table]} FROM ${SCHEMA}.${table}) TO '${tsv[table]}'`,
      ],
    }).output();
    if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
  }
}

function ceilingRun(tsv: Record<string, string>) {
  return timed([
    "psql",
    URL_,
    "-q",
    "-v",
    "ON_ERROR_STOP=1",
    "-c",
    `SET search_path TO ${SCHEMA}`,
    "-c",
    `\\copy tracks (${COLUMNS.tracks}) FROM '${tsv.tracks}'`,
    "-c",
    `\\copy snapshots (${COLUMNS.snapshots}) FROM '${tsv.snapshots}'`,
  ]);
}

/** Exactly the command `deno task migrate` runs, with absolute paths. */
function migrateCommand(): string[] {
  const task: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks.migrate;
  return task.split(" ").map((word, i) =>
    i === 0 ? Deno.execPath() : word === "migrate.ts" ? `${ROOT}migrate.ts` : word
  );
}

async function migrateRun(db: string) {
  const result = await timed([
    ...migrateCommand(),
    "--sqlite",
    db,
    "--database-url",
    URL_,
    "--schema",
    SCHEMA,
    "--json",
  ]);
  const report = JSON.parse(result.stdout);
  if (!report.ok) throw new Error(`migration failed: ${result.stdout}`);
  return { ...result, report };
}

/** Rows whose current version was written after `since` (a transaction id). */
async function rowsWrittenSince(since: bigint): Promise<number> {
  const [{ n }] = await sql.unsafe(
    `SELECT ((SELECT count(*) FROM ${SCHEMA}.tracks WHERE xmin::text::bigint >= $1) +
             (SELECT count(*) FROM ${SCHEMA}.snapshots WHERE xmin::text::bigint >= $1))::int AS n`,
    [String(since % 4294967296n)],
  );
  return n;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const summary: string[] = [];
const rssBySize: Record<string, number> = {};
for (const size of sizes) {
  const { db, tsv } = ensureData(size);
  await ensureTsv(size, db, tsv);
  const results = {
    ceiling: [] as Measurement[],
    first: [] as Measurement[],
    rerun: [] as Measurement[],
  };
  let rewritten = 0;
  for (let i = 0; i < runs; i++) {
    const ceilingFirst = i % 2 === 0;
    const ceiling = async () => {
      await resetTarget();
      results.ceiling.push(await ceilingRun(tsv));
    };
    if (ceilingFirst) await ceiling();
    await resetTarget();
    results.first.push(await migrateRun(db));
    const [{ xid }] = await sql`SELECT txid_current()::text AS xid`;
    const rerun = await migrateRun(db);
    results.rerun.push(rerun);
    const written = await rowsWrittenSince(BigInt(xid));
    const counted = rerun.report.tables.reduce(
      (sum: number, t: { inserted: number; updated: number }) => sum + t.inserted + t.updated,
      0,
    );
    rewritten = Math.max(rewritten, written, counted);
    if (!ceilingFirst) await ceiling();
    console.error(
      `${size} run ${i + 1}/${runs}: ceiling ${
        results.ceiling.at(-1)!.seconds.toFixed(1)
      }s, first ${results.first.at(-1)!.seconds.toFixed(1)}s, rerun ${
        results.rerun.at(-1)!.seconds.toFixed(1)
      }s`,
    );
  }
  const ceiling = median(results.ceiling.map((m) => m.seconds));
  const first = median(results.first.map((m) => m.seconds));
  const rows = SIZES[size].tracks + SIZES[size].snapshots;
  const line = (name: string, ms: Measurement[], extra = "") => {
    const s = median(ms.map((m) => m.seconds));
    const rss = Math.max(...ms.map((m) => m.rssMiB));
    return `| ${size} | ${name} | ${s.toFixed(1)} | ${(s / ceiling).toFixed(2)}× | ${
      Math.round(rows / s)
    } | ${rss.toFixed(0)} | ${extra} |`;
  };
  rssBySize[size] = Math.max(
    ...results.first.map((m) => m.rssMiB),
    ...results.rerun.map((m) => m.rssMiB),
  );
  summary.push(
    line("psql \\copy (ceiling)", results.ceiling),
    line("migrate.ts first run", results.first),
    line(
      "migrate.ts rerun, unchanged",
      results.rerun,
      `${
        (median(results.rerun.map((m) => m.seconds)) / first).toFixed(2)
      }× first run; ${rewritten} rows rewritten`,
    ),
  );
}
await sql.unsafe(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
await sql.end();

console.log(`\nmedians of ${runs} alternating runs; peak RSS is the maximum over runs\n`);
console.log("| size | run | wall s | vs ceiling | rows/s | peak RSS MiB | notes |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
console.log(summary.join("\n"));
if (rssBySize.small && rssBySize.large) {
  console.log(`\npeak RSS large/small: ${(rssBySize.large / rssBySize.small).toFixed(2)}×`);
}
