// Tests against a real PostgreSQL (TEST_DATABASE_URL; see README). Run them
// with `deno task test` (bench/test.ts), which starts an embedded PostgreSQL
// when there is none to use and then says here what it cannot provide
// (TEST_NO_TLS). Each test builds its SQLite fixture in a temp dir and
// migrates into a throwaway schema that it creates and drops.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import {
  maskUrl,
  migrate,
  MigrationError,
  type Options,
  parseDotenv,
  type Report,
  resolveOptions,
  verify,
} from "./migrate.ts";

const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ??
  "postgresql://mtm:mtm-test-pw@localhost:5432/mtm_test";
const TEST_PASSWORD = new URL(TEST_DATABASE_URL).password;
/** Why the test server has no TLS (an embedded one without openssl), if so. */
const NO_TLS = Deno.env.get("TEST_NO_TLS");
const MIGRATE_TS = new URL("./migrate.ts", import.meta.url).pathname;
const DENO_JSON = new URL("./deno.json", import.meta.url).pathname;

// The target schema as it exists in production (issue #2).
const PRODUCTION_DDL = [
  `CREATE TABLE tracks (track_id TEXT PRIMARY KEY, name TEXT NOT NULL, artist_name TEXT NOT NULL,
    album_name TEXT, duration_ms INTEGER, spotify_url TEXT, raw_json JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`,
  `CREATE TABLE snapshots (track_id TEXT NOT NULL REFERENCES tracks(track_id),
    snapshot_date DATE NOT NULL, time_range TEXT NOT NULL, rank INTEGER NOT NULL,
    PRIMARY KEY (track_id, snapshot_date, time_range))`,
];

// --- fixtures ---------------------------------------------------------------

type Value = string | number | bigint | null | Uint8Array;

interface Track {
  track_id: Value;
  name: Value;
  artist_name: Value;
  album_name: Value;
  duration_ms: Value;
  spotify_url: Value;
  raw_json: Value;
}

interface Snapshot {
  track_id: Value;
  snapshot_date: Value;
  time_range: Value;
  rank: Value;
}

function track(id: string, fields: Partial<Track> = {}): Track {
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

function snapshot(trackId: string, fields: Partial<Snapshot> = {}): Snapshot {
  return {
    track_id: trackId,
    snapshot_date: "2024-03-01",
    time_range: "short_term",
    rank: 1,
    ...fields,
  };
}

interface SourceShape {
  /** The app's schema has UNIQUE(track_id, snapshot_date, time_range); some copies do not. */
  uniqueSnapshots?: boolean;
  /** Drop NOT NULL and PRIMARY KEY so that bad rows can exist. */
  loose?: boolean;
  wal?: boolean;
}

function writeSqlite(
  path: string,
  tracks: Track[],
  snapshots: Snapshot[],
  shape: SourceShape = {},
): void {
  const db = new DatabaseSync(path);
  if (shape.wal) db.exec("PRAGMA journal_mode = WAL");
  const notNull = shape.loose ? "" : "NOT NULL";
  db.exec(`
    CREATE TABLE tracks (id INTEGER PRIMARY KEY, track_id TEXT ${
    shape.loose ? "" : "UNIQUE NOT NULL"
  },
      name TEXT ${notNull}, artist_name TEXT ${notNull}, album_name TEXT, duration_ms INTEGER,
      spotify_url TEXT, raw_json TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP);
    CREATE TABLE snapshots (id INTEGER PRIMARY KEY, track_id TEXT ${notNull},
      snapshot_date TEXT ${notNull}, time_range TEXT ${notNull}, rank INTEGER ${notNull}
      ${shape.uniqueSnapshots === false ? "" : ", UNIQUE (track_id, snapshot_date, time_range)"});
  `);
  insertRows(db, tracks, snapshots);
  db.close();
}

function insertRows(db: DatabaseSync, tracks: Track[], snapshots: Snapshot[]): void {
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
function bulkRows(tracks: number, snapshotsPerTrack: number): [Track[], Snapshot[]] {
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

interface Env {
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
async function withTarget(
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

async function targetRows(env: Env) {
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

async function counts(env: Env): Promise<[number, number]> {
  const [row] = await env.sql.unsafe(
    `SELECT (SELECT count(*) FROM ${env.schema}.tracks)::int AS t,
            (SELECT count(*) FROM ${env.schema}.snapshots)::int AS s`,
  );
  return [row.t, row.s];
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function cliCommand(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", DENO_JSON, MIGRATE_TS, ...args],
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
    stdout: "piped",
    stderr: "piped",
  });
}

async function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const { code, stdout, stderr } = await cliCommand(args, opts).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

async function rejectsWith(
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
function problemKeys(error: MigrationError): string[] {
  return error.problems.flatMap((g) => g.examples.map((p) => p.key));
}

// --- issue #2: the migration itself -----------------------------------------

const TRICKY_TEXT = "comma, \"quotes\" 'single' back\\slash \\N tab\tnew\nline cr\r emoji 🎵🇸🇪 ü";

Deno.test("migrate() copies every column of every row exactly", async () => {
  await withTarget(async (env) => {
    const tracks = [
      track("t-object", {
        name: TRICKY_TEXT,
        artist_name: "\\N",
        album_name: "a\tb",
        raw_json:
          '{"album": {"release_date": "1999-12-31"}, "explicit": true, "big": 12345678901234567890, "tiny": 1.0000000000000000001, "s": "\\u00e9\\ud83c\\udfb5 \\\\u0000 \\" \\n"}',
      }),
      track("t-array", { raw_json: '[1, 2.50, {"a": null}]', album_name: null }),
      track("t-string", { raw_json: '"just text, with \\"quotes\\""', duration_ms: null }),
      track("t-number", { raw_json: "-0.000000000000000000000012345678901234567890e-5" }),
      track("t-json-null", { raw_json: "null", spotify_url: null }),
      track("t-empty", { raw_json: "" }),
      track("t-sql-null", { raw_json: null, duration_ms: 2147483647 }),
      track("T-upper ü", { duration_ms: -2147483648 }),
    ];
    const snapshots = [
      snapshot("t-object", { rank: 1 }),
      snapshot("t-object", { time_range: "long_term", rank: 50 }),
      snapshot("t-array", { snapshot_date: "2024-02-29", time_range: "medium_term" }),
      snapshot("T-upper ü", { snapshot_date: "0999-01-01", time_range: TRICKY_TEXT }),
    ];
    writeSqlite(env.sqlitePath, tracks, snapshots);

    const report = await migrate(env.options);
    assert.equal(report.ok, true);
    assert.equal(report.committed, true);

    const got = await targetRows(env);
    // Byte order, as COLLATE "C" sorts; these ids are all below U+FFFF.
    const expected = [...tracks].sort((a, b) => a.track_id! < b.track_id! ? -1 : 1);
    assert.equal(got.tracks.length, tracks.length);
    for (const [i, want] of expected.entries()) {
      const row = got.tracks[i];
      for (const column of ["track_id", "name", "artist_name", "album_name", "spotify_url"]) {
        assert.equal(row[column], want[column as keyof Track], `${want.track_id}.${column}`);
      }
      assert.equal(row.duration_ms, want.duration_ms);
      const raw = want.raw_json as string | null;
      if (raw === null || raw === "") {
        assert.equal(row.raw_json, null, `${want.track_id}: empty raw_json becomes SQL NULL`);
      } else {
        const [{ same }] = await env
          .sql`SELECT ${row.raw_json}::text::jsonb = ${raw}::text::jsonb AS same`;
        assert.ok(same, `${want.track_id}: raw_json equal as JSONB`);
      }
    }
    const types = Object.fromEntries(got.tracks.map((r) => [r.track_id, r.json_type]));
    assert.deepEqual(types, {
      "T-upper ü": "object",
      "t-array": "array",
      "t-empty": null,
      "t-json-null": "null",
      "t-number": "number",
      "t-object": "object",
      "t-sql-null": null,
      "t-string": "string",
    });
    assert.deepEqual(
      got.snapshots.map((s) => [s.track_id, s.snapshot_date, s.time_range, s.rank]),
      [
        ["T-upper ü", "0999-01-01", TRICKY_TEXT, 1],
        ["t-array", "2024-02-29", "medium_term", 1],
        ["t-object", "2024-03-01", "long_term", 50],
        ["t-object", "2024-03-01", "short_term", 1],
      ],
    );
    assert.equal(report.verification.jsonObjects, 2);
    assert.equal(report.verification.sample?.releaseDate, "2020-02-02");
  });
});

Deno.test("migrate() keeps big and precise JSON numbers digit for digit", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [
      track("n", { raw_json: '{"big": 12345678901234567890, "precise": 1.0000000000000000001}' }),
    ], []);
    await migrate(env.options);
    const [row] = await env.sql.unsafe(
      `SELECT raw_json->>'big' AS big, raw_json->>'precise' AS precise,
              jsonb_typeof(raw_json->'big') AS type FROM ${env.schema}.tracks`,
    );
    assert.deepEqual({ ...row }, {
      big: "12345678901234567890",
      precise: "1.0000000000000000001",
      type: "number",
    });
  });
});

/** Payloads at JSONB's edges, and random mutations of them (deterministic). */
function jsonCandidates(count: number): string[] {
  const edges = [
    '{"a": [1, 2.5, -3e2, true, false, null, "x\\"y\\\\z\\/\\b\\f\\n\\r\\t\\u00e9\\ud83c\\udfb5"], "b": {}}',
    "1e131071", // numeric's largest magnitude
    "1e131072", // one digit too many for numeric
    "0.0001e131075",
    "0.000e1310721", // zero fits whatever the exponent
    "1e-16383",
    "0.1e-16383", // one decimal too many for numeric
    '"\\ud800"', // lone high surrogate
    '"\\udc00\\ud800"', // lone low surrogate
    '"\\u0000"', // JSONB cannot store NUL
    '"\\\\u0000"', // an escaped backslash, then text
    '"\\uD83C\\uDFB5"',
    " [ ] ",
    "[1,]",
    "01",
    "1.",
    "-",
    "NaN",
    '"tab\there"',
    '{"a":1,"a":2}',
    "nulls",
  ];
  const alphabet = [...'{}[],:"\\u01-.eE+ ntd8c'];
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const candidates = [...edges];
  while (candidates.length < count) {
    let text = edges[Math.floor(random() * 12)];
    for (let edit = 0; edit < 1 + Math.floor(random() * 3); edit++) {
      const at = Math.floor(random() * (text.length + 1));
      const c = alphabet[Math.floor(random() * alphabet.length)];
      const r = random();
      text = text.slice(0, at) + (r < 0.7 ? c : "") + text.slice(r < 0.4 ? at : at + 1);
    }
    candidates.push(text);
  }
  return candidates;
}

Deno.test("raw_json is refused exactly when PostgreSQL's JSONB would refuse it", async () => {
  await withTarget(async (env) => {
    const candidates = jsonCandidates(1500).filter((text) => text.trim() !== "");
    writeSqlite(env.sqlitePath, candidates.map((raw, i) => track(`j${i}`, { raw_json: raw })), []);
    const report = await migrate({ ...env.options, invalidJson: "null" });
    assert.equal(report.ok, true);
    const rows = await env.sql.unsafe(`SELECT track_id, raw_json::text FROM ${env.schema}.tracks`);
    const stored = new Map(rows.map((r) => [r.track_id, r.raw_json]));
    let refused = 0;
    for (const [i, text] of candidates.entries()) {
      let accepted = true;
      try {
        await env.sql.begin((tx) => tx`SELECT ${text}::text::jsonb`);
      } catch {
        accepted = false;
      }
      const got = stored.get(`j${i}`);
      if (!accepted) {
        refused++;
        assert.equal(
          got,
          null,
          `refused by PostgreSQL, so stored as NULL: ${JSON.stringify(text)}`,
        );
        continue;
      }
      const [{ same }] = await env.sql`SELECT ${got}::text::jsonb = ${text}::text::jsonb AS same`;
      assert.ok(same, `accepted by PostgreSQL and stored equal: ${JSON.stringify(text)}`);
    }
    assert.ok(refused > 100 && refused < candidates.length - 100, `${refused} refused`);
    assert.equal(report.policies[0].total, refused);
  });
});

Deno.test("a rerun over unchanged data rewrites nothing and keeps updated_at", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    await migrate(env.options);
    const before = await targetRows(env);
    const rerun = await migrate(env.options);
    assert.deepEqual(
      rerun.tables.map((t) => [t.table, t.inserted, t.updated, t.unchanged]),
      [["tracks", 0, 0, 2], ["snapshots", 0, 0, 2]],
    );
    const [{ xmins }] = await env.sql.unsafe(
      `SELECT count(DISTINCT xmin::text)::int AS xmins FROM ${env.schema}.tracks`,
    );
    assert.equal(xmins, 1, "no row version was written by the rerun");
    assert.deepEqual(await targetRows(env), before);
  });
});

Deno.test("raw_json that is equal as JSONB counts as unchanged, even when stored differently", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a", { raw_json: '{"n": 1.0}' }), track("b")], []);
    await migrate(env.options);
    // Equal as JSONB (numeric 1.0 = 1.00) but not the same bytes on disk.
    await env.sql.unsafe(
      `UPDATE ${env.schema}.tracks SET raw_json = '{"n": 1.00}' WHERE track_id = 'a';
       UPDATE ${env.schema}.tracks SET raw_json = '{"n": 2}' WHERE track_id = 'b'`,
    );
    const verified = await verify(env.options);
    assert.deepEqual(
      verified.verification.mismatches.flatMap((g) => g.examples.map((p) => p.key)),
      ["b"],
    );
    const report = await migrate(env.options);
    assert.deepEqual(report.tables[0].updated, 1);
    assert.deepEqual(report.tables[0].unchanged, 1);
    assert.equal(report.ok, true);
  });
});

Deno.test("a rerun picks up changed, new and fixed source rows", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    await migrate(env.options);
    const before = await targetRows(env);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`UPDATE tracks SET name = 'renamed', raw_json = '{"v": 2}' WHERE track_id = 'a';
             UPDATE snapshots SET rank = 9 WHERE track_id = 'b'`);
    insertRows(db, [track("c")], [snapshot("c")]);
    db.close();

    const report = await migrate(env.options);
    assert.deepEqual(
      report.tables.map((t) => [t.table, t.inserted, t.updated, t.unchanged]),
      [["tracks", 1, 1, 1], ["snapshots", 1, 1, 1]],
    );
    const after = await targetRows(env);
    const byId = (rows: typeof after.tracks, id: string) => rows.find((r) => r.track_id === id)!;
    assert.equal(byId(after.tracks, "a").name, "renamed");
    assert.equal(byId(after.tracks, "a").raw_json, '{"v": 2}');
    assert.ok(byId(after.tracks, "a").updated_at > byId(before.tracks, "a").updated_at);
    assert.deepEqual(byId(after.tracks, "b").updated_at, byId(before.tracks, "b").updated_at);
    assert.equal(after.snapshots.find((s) => s.track_id === "b")!.rank, 9);
  });
});

Deno.test("--create-schema creates the schema and tables it needs", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const schema = `${env.schema}_new`;
    try {
      const report = await migrate({ ...env.options, schema, createSchema: true });
      assert.equal(report.ok, true);
      const [{ n }] = await env.sql`SELECT count(*)::int AS n FROM ${env.sql(schema)}.snapshots`;
      assert.equal(n, 1);
      const [{ fk }] = await env.sql`
        SELECT count(*)::int AS fk FROM information_schema.table_constraints
        WHERE table_schema = ${schema} AND constraint_type = 'FOREIGN KEY'`;
      assert.equal(fk, 1, "snapshots reference tracks");
    } finally {
      await env.sql`DROP SCHEMA IF EXISTS ${env.sql(schema)} CASCADE`;
    }
  }, { tables: false });
});

Deno.test("CLI migrates, prints counts and verification, never the password", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    const result = await runCli(env.flags, { cwd: env.dir });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /tracks\s+2\s+2\s+0\s+0/);
    assert.match(result.stdout, /snapshots: SQLite=1, PostgreSQL=1 ok/);
    assert.match(result.stdout, /every row in PostgreSQL equals its SQLite source/);
    assert.match(result.stdout, /2 tracks have queryable raw_json objects/);
    assert.ok(result.stdout.includes(maskUrl(TEST_DATABASE_URL)));
    assert.ok(!`${result.stdout}${result.stderr}`.includes(TEST_PASSWORD), "password printed");

    const json = await runCli([...env.flags, "--json"], { cwd: env.dir });
    assert.equal(json.code, 0, json.stderr);
    const report: Report = JSON.parse(json.stdout);
    assert.equal(report.ok, true);
    assert.deepEqual(report.tables.map((t) => t.unchanged), [2, 1]);
    assert.ok(!json.stdout.includes(TEST_PASSWORD));

    const quiet = await runCli([...env.flags, "--quiet"], { cwd: env.dir });
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stdout, "");
  });
});

Deno.test("CLI --help documents every flag with examples", async () => {
  const result = await runCli(["--help"]);
  assert.equal(result.code, 0);
  for (
    const flag of [
      "--sqlite",
      "--database-url",
      "--schema",
      "--create-schema",
      "--dry-run",
      "--verify-only",
      "--prune",
      "--invalid-json",
      "--orphans",
      "--batch-size",
      "--connect-timeout",
      "--quiet",
      "--json",
      "--help",
    ]
  ) {
    assert.ok(result.stdout.includes(flag), `--help mentions ${flag}`);
  }
  assert.match(result.stdout, /Examples:\n\s+deno run -A migrate.ts/);
  assert.match(result.stdout, /Exit codes: 0 success, 1 .*\n.*2 usage/);
  const bad = await runCli(["--orphans=maybe"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--orphans must be one of fail, skip/);
});

Deno.test(".env is read, and variables already set win over it", async (t) => {
  await t.step("parseDotenv understands quotes, export and comments", () => {
    assert.deepEqual(
      parseDotenv(
        "# comment\nexport A=1\nB=\"two # not a comment\\n\"\nC='x y' # c\nD=p#w\nE=\n  F = spaced  \n",
      ),
      { A: "1", B: "two # not a comment\n", C: "x y", D: "p#w", E: "", F: "spaced" },
    );
  });
  await t.step("resolveOptions: flags > environment > defaults", () => {
    const { options } = resolveOptions(["--sqlite", "flag.db"], {
      SQLITE_PATH: "env.db",
      DATABASE_URL: "postgresql://env/db",
    });
    assert.equal(options.sqlitePath, "flag.db");
    assert.equal(options.databaseUrl, "postgresql://env/db");
    assert.equal(resolveOptions([], {}).options.sqlitePath, "music_time_machine.db");
    assert.equal(
      resolveOptions([], {}).options.databaseUrl,
      "postgresql://localhost/music_time_machine_pg",
    );
  });
  await t.step("the CLI loads .env from the working directory", async () => {
    await withTarget(async (env) => {
      writeSqlite(env.sqlitePath, [track("a")], []);
      await Deno.writeTextFile(
        `${env.dir}/.env`,
        `SQLITE_PATH=${env.sqlitePath}\nDATABASE_URL=postgresql://nobody:wrong@127.0.0.1:1/x\n`,
      );
      const result = await runCli(["--schema", env.schema], {
        cwd: env.dir,
        env: { DATABASE_URL: TEST_DATABASE_URL },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(await counts(env), [1, 0]);
    });
  });
});

// --- issue #3: strict validation, all-or-nothing, content verification ------

interface BadCase {
  name: string;
  tracks: Track[];
  snapshots: Snapshot[];
  shape?: SourceShape;
  kind: string;
  key: string;
}

const GOOD = [track("good")];
const BAD_INPUT: BadCase[] = [
  {
    name: "raw_json that is not JSON",
    tracks: [...GOOD, track("bad", { raw_json: "{oops" })],
    snapshots: [],
    kind: "invalid-json",
    key: "bad",
  },
  {
    name: "raw_json with NaN",
    tracks: [...GOOD, track("bad", { raw_json: '{"x": NaN}' })],
    snapshots: [],
    kind: "invalid-json",
    key: "bad",
  },
  {
    name: "raw_json with \\u0000 (JSONB rejects it)",
    tracks: [...GOOD, track("bad", { raw_json: '{"x": "a\\u0000b"}' })],
    snapshots: [],
    kind: "invalid-json",
    key: "bad",
  },
  {
    name: "raw_json with a lone surrogate",
    tracks: [...GOOD, track("bad", { raw_json: '{"x": "\\ud800"}' })],
    snapshots: [],
    kind: "invalid-json",
    key: "bad",
  },
  {
    name: "raw_json with a lone low surrogate",
    tracks: [...GOOD, track("bad", { raw_json: '["\\udc00\\ud800"]' })],
    snapshots: [],
    kind: "invalid-json",
    key: "bad",
  },
  {
    name: "duration_ms as text",
    tracks: [...GOOD, track("bad", { duration_ms: "three minutes" })],
    snapshots: [],
    kind: "not-integer",
    key: "bad",
  },
  {
    name: "duration_ms 2.5",
    tracks: [...GOOD, track("bad", { duration_ms: 2.5 })],
    snapshots: [],
    kind: "not-integer",
    key: "bad",
  },
  {
    name: "duration_ms beyond INTEGER",
    tracks: [...GOOD, track("bad", { duration_ms: 2147483648 })],
    snapshots: [],
    kind: "not-integer",
    key: "bad",
  },
  {
    name: "rank beyond 2^53",
    tracks: GOOD,
    snapshots: [snapshot("good", { rank: 9223372036854775807n })],
    kind: "not-integer",
    key: "good/2024-03-01/short_term",
  },
  {
    name: "snapshot_date that is no calendar date",
    tracks: GOOD,
    snapshots: [snapshot("good", { snapshot_date: "2024-13-45" })],
    kind: "invalid-date",
    key: "good/2024-13-45/short_term",
  },
  {
    name: "snapshot_date 29 February of a common year",
    tracks: GOOD,
    snapshots: [snapshot("good", { snapshot_date: "2023-02-29" })],
    kind: "invalid-date",
    key: "good/2023-02-29/short_term",
  },
  {
    name: "NUL character in text",
    tracks: [...GOOD, track("bad", { name: "a\0b" })],
    snapshots: [],
    kind: "nul-character",
    key: "bad",
  },
  {
    name: "NULL in a NOT NULL column",
    tracks: [...GOOD, track("bad", { artist_name: null })],
    snapshots: [],
    shape: { loose: true },
    kind: "null-value",
    key: "bad",
  },
  {
    name: "BLOB in a text column",
    tracks: [...GOOD, track("bad", { name: new Uint8Array([1, 2]) })],
    snapshots: [],
    kind: "not-text",
    key: "bad",
  },
  {
    name: "raw_json that is not JSON, in a track that has snapshots (they are no orphans)",
    tracks: [...GOOD, track("bad", { raw_json: "{oops" })],
    snapshots: [snapshot("bad"), snapshot("good")],
    kind: "invalid-json",
    key: "bad",
  },
  {
    name: "orphan snapshot",
    tracks: GOOD,
    snapshots: [snapshot("good"), snapshot("ghost")],
    kind: "orphan-snapshot",
    key: "ghost/2024-03-01/short_term",
  },
  {
    name: "the same snapshot key twice",
    tracks: GOOD,
    snapshots: [snapshot("good"), snapshot("good", { rank: 2 })],
    shape: { uniqueSnapshots: false },
    kind: "duplicate-key",
    key: "good/2024-03-01/short_term",
  },
  {
    name: "the same track_id twice",
    tracks: [...GOOD, track("good", { name: "again" })],
    snapshots: [],
    shape: { loose: true },
    kind: "duplicate-key",
    key: "good",
  },
];

for (const bad of BAD_INPUT) {
  Deno.test(`bad input is refused with its key and nothing written: ${bad.name}`, async () => {
    await withTarget(async (env) => {
      writeSqlite(env.sqlitePath, bad.tracks, bad.snapshots, bad.shape);
      const error = await rejectsWith(migrate(env.options), "data");
      assert.equal(error.exitCode, 1);
      assert.deepEqual(error.problems.map((g) => g.kind), [bad.kind]);
      assert.ok(problemKeys(error).includes(bad.key), `${bad.key} in ${problemKeys(error)}`);
      assert.deepEqual(await counts(env), [0, 0]);
    });
  });
}

Deno.test("CLI reports every problem in one pass, grouped by kind, 20 per kind", async () => {
  await withTarget(async (env) => {
    const tracks = [track("good")];
    for (let i = 0; i < 25; i++) {
      tracks.push(track(`bad${String(i).padStart(2, "0")}`, { raw_json: "{" }));
    }
    tracks.push(track("long", { duration_ms: "x".repeat(500) }));
    writeSqlite(env.sqlitePath, tracks, [snapshot("good", { snapshot_date: "yesterday" })]);
    const result = await runCli(env.flags, { cwd: env.dir });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /raw_json is not valid JSON .* \(25 rows\)/);
    assert.match(result.stderr, /tracks bad19 column raw_json: "\{"/);
    assert.ok(!result.stderr.includes("bad20 "), "only the first 20 are named");
    assert.match(result.stderr, /… and 5 more/);
    assert.match(result.stderr, /tracks long column duration_ms: "x{59}…\n/);
    assert.match(result.stderr, /snapshots good\/yesterday\/short_term column snapshot_date/);
    assert.match(result.stderr, /fix: .*--invalid-json=null/);
    assert.ok(!result.stderr.includes("    at "), "no stack trace");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("--invalid-json=null and --orphans=skip apply and report the keys", async () => {
  await withTarget(async (env) => {
    writeSqlite(
      env.sqlitePath,
      [track("good"), track("broken", { raw_json: "{not json" })],
      [snapshot("good"), snapshot("ghost")],
    );
    const error = await rejectsWith(migrate(env.options), "data");
    assert.deepEqual(error.problems.map((g) => g.kind), ["invalid-json", "orphan-snapshot"]);

    const result = await runCli([...env.flags, "--invalid-json=null", "--orphans=skip"], {
      cwd: env.dir,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Changed by policy:/);
    assert.match(result.stdout, /tracks broken column raw_json/);
    assert.match(result.stdout, /snapshots ghost\/2024-03-01\/short_term/);
    assert.match(result.stdout, /snapshots: SQLite=2 \(1 skipped\), PostgreSQL=1 ok/);
    const [row] = await env.sql.unsafe(
      `SELECT raw_json FROM ${env.schema}.tracks WHERE track_id = 'broken'`,
    );
    assert.equal(row.raw_json, null);
  });
});

Deno.test("bad setup: one clear line, exit 2, nothing created", async (t) => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], []);
    const noPasswordIn = (r: CliResult) =>
      assert.ok(!`${r.stdout}${r.stderr}`.includes(TEST_PASSWORD), "password printed");
    const oneError = (r: CliResult, pattern: RegExp) => {
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, pattern);
      assert.ok(!r.stderr.includes("    at "), "no stack trace");
      noPasswordIn(r);
    };

    await t.step("missing SQLite file is named and not created", async () => {
      const missing = `${env.dir}/nope.db`;
      oneError(
        await runCli([...env.flags, "--sqlite", missing]),
        new RegExp(`SQLite database not found: ${missing}`),
      );
      await assert.rejects(Deno.stat(missing), Deno.errors.NotFound);
    });
    await t.step("a file that is not SQLite", async () => {
      await Deno.writeTextFile(
        `${env.dir}/notes.db`,
        "these are not the rows you are looking for".repeat(50),
      );
      oneError(
        await runCli([...env.flags, "--sqlite", `${env.dir}/notes.db`]),
        /is not a readable SQLite database/,
      );
    });
    await t.step("missing table or column is named", async () => {
      const db = new DatabaseSync(`${env.dir}/partial.db`);
      db.exec("CREATE TABLE tracks (track_id TEXT, name TEXT)");
      db.close();
      oneError(
        await runCli([...env.flags, "--sqlite", `${env.dir}/partial.db`]),
        /SQLite table tracks lacks column artist_name, album_name/,
      );
      const db2 = new DatabaseSync(`${env.dir}/notables.db`);
      db2.exec("CREATE TABLE other (x)");
      db2.close();
      oneError(
        await runCli([...env.flags, "--sqlite", `${env.dir}/notables.db`]),
        /SQLite database has no table tracks/,
      );
    });
    await t.step("wrong password", async () => {
      const url = new URL(TEST_DATABASE_URL);
      url.password = "definitely-wrong-pw";
      const r = await runCli([...env.flags, "--database-url", url.href]);
      oneError(r, /password authentication failed[\s\S]*fix: wrong user name or password/);
      assert.ok(!r.stderr.includes("definitely-wrong-pw"));
    });
    await t.step("connection refused", async () => {
      const url = new URL(TEST_DATABASE_URL);
      url.port = "1";
      oneError(
        await runCli([...env.flags, "--database-url", url.href]),
        /ECONNREFUSED[\s\S]*is PostgreSQL running/,
      );
    });
    await t.step("a host that never answers gives up after --connect-timeout", async () => {
      const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const conn of silent) held.push(conn);
      })();
      const url = new URL(TEST_DATABASE_URL);
      url.host = `127.0.0.1:${(silent.addr as Deno.NetAddr).port}`;
      const started = performance.now();
      const r = await runCli([...env.flags, "--database-url", url.href, "--connect-timeout", "1"]);
      const seconds = (performance.now() - started) / 1000;
      silent.close();
      for (const conn of held) conn.close();
      await accepting.catch(() => {});
      oneError(r, /CONNECT_TIMEOUT|timeout/i);
      assert.ok(seconds < 8, `gave up after ${seconds.toFixed(1)}s`);
    });
    await t.step("missing target table names it", async () => {
      oneError(
        await runCli([...env.flags, "--schema", "public_nonexistent"]),
        /PostgreSQL schema public_nonexistent does not exist/,
      );
    });
  });
});

Deno.test({
  name: `TLS: a server that requires it refuses plain connections; sslmode=require works${
    NO_TLS ? ` (ignored: ${NO_TLS})` : ""
  }`,
  ignore: NO_TLS !== undefined,
}, async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const url = new URL(TEST_DATABASE_URL);
    url.username = "mtm_tls"; // set up by .ci/setup-postgres: hostnossl … reject
    const plain = await runCli([...env.flags, "--database-url", url.href]);
    assert.equal(plain.code, 2, plain.stderr);
    assert.match(plain.stderr, /no encryption[\s\S]*sslmode=require/);
    url.searchParams.set("sslmode", "require");
    const tls = await runCli([...env.flags, "--database-url", url.href]);
    assert.equal(tls.code, 0, tls.stderr);
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

Deno.test("a user who may write but not alter the tables still bulk-loads, row by row", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(1000, 12); // 12,000 snapshots: the bulk path
    writeSqlite(env.sqlitePath, tracks, snapshots);
    // mtm_writer (from .ci/setup-postgres) owns nothing; it gets only what a writer needs.
    await env.sql.unsafe(`GRANT USAGE ON SCHEMA ${env.schema} TO mtm_writer;
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${env.schema} TO mtm_writer`);
    const url = new URL(TEST_DATABASE_URL);
    url.username = "mtm_writer";
    const result = await runCli([...env.flags, "--database-url", url.href]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await counts(env), [1000, 12000]);
    const [{ n }] = await env.sql`
      SELECT count(*)::int AS n FROM pg_constraint
      WHERE conrelid = ${`${env.schema}.snapshots`}::regclass AND contype <> 'n'`;
    assert.equal(n, 2, "primary and foreign key untouched");
  });
});

Deno.test("rows only in PostgreSQL stop the run unless --prune deletes them", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    await migrate(env.options);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`DELETE FROM snapshots WHERE track_id = 'b'; DELETE FROM tracks WHERE track_id = 'b';
             UPDATE tracks SET name = 'changed' WHERE track_id = 'a'`);
    db.close();
    const error = await rejectsWith(migrate(env.options), "data");
    assert.deepEqual(problemKeys(error), ["b", "b/2024-03-01/short_term"]);
    assert.deepEqual(await counts(env), [2, 2]);
    const [{ name }] = await env.sql.unsafe(
      `SELECT name FROM ${env.schema}.tracks WHERE track_id = 'a'`,
    );
    assert.equal(name, "Song a", "nothing written");

    const report = await migrate({ ...env.options, prune: true });
    assert.deepEqual(report.tables.map((t) => [t.table, t.pruned, t.updated]), [
      ["tracks", 1, 1],
      ["snapshots", 1, 0],
    ]);
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

Deno.test("--verify-only proves content and names the rows that differ", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b"), track("c")], [
      snapshot("a"),
      snapshot("b"),
    ]);
    await migrate(env.options);
    assert.equal((await verify(env.options)).ok, true);

    await env.sql.unsafe(`
      UPDATE ${env.schema}.tracks SET raw_json = jsonb_set(raw_json, '{explicit}', 'true')
        WHERE track_id = 'b';
      UPDATE ${env.schema}.snapshots SET rank = 2 WHERE track_id = 'a';
      INSERT INTO ${env.schema}.tracks (track_id, name, artist_name) VALUES ('zz', 'extra', 'x');
      DELETE FROM ${env.schema}.tracks WHERE track_id = 'c';`);
    const before = await targetRows(env);
    const report = await verify(env.options);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.verification.mismatches[0].examples.map((p) => [p.table, p.key, p.value]),
      [
        ["tracks", "b", "values differ"],
        ["tracks", "c", "missing in PostgreSQL"],
        ["tracks", "zz", "only in PostgreSQL"],
        ["snapshots", "a/2024-03-01/short_term", "values differ"],
      ],
    );
    assert.deepEqual(await targetRows(env), before, "verify-only writes nothing");
    const cli = await runCli([...env.flags, "--verify-only"]);
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /tracks zz: only in PostgreSQL/);
    assert.match(cli.stdout, /Verification failed/);
  });
});

Deno.test("SQLite is read read-only, as one consistent snapshot while the app writes", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")], {
      wal: true,
    });
    const app = new DatabaseSync(env.sqlitePath);
    let wrote = false;
    const report = await migrate({
      ...env.options,
      onProgress: ({ table }) => {
        if (table !== "tracks" || wrote) return;
        wrote = true;
        // The app commits a new day of snapshots while tracks are being read.
        insertRows(app, [track("c")], [
          snapshot("c"),
          snapshot("a", { snapshot_date: "2024-03-02" }),
        ]);
      },
    });
    app.close();
    assert.ok(wrote);
    assert.equal(report.ok, true);
    assert.deepEqual(await counts(env), [2, 2], "the copy is the moment the run started");
  });
});

/** Runs the CLI and calls `when` with each stdout line until it returns true. */
async function spawnUntil(args: string[], when: (line: string) => boolean) {
  const child = cliCommand(args).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (true) {
    const { value, done } = await lines.read();
    if (done) break;
    seen += value;
    if (seen.split("\n").some(when)) break;
  }
  return { child, lines, seen: () => seen };
}

Deno.test("kill -9 in the middle leaves the target as it was; a rerun completes it", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(3000, 40);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const gate = await holdSnapshotInserts(env);
    const run = cliCommand(env.flags).spawn();
    await gate.waitingPid(); // tracks are written, snapshots are being written
    run.kill("SIGKILL");
    await run.status;
    await gate.release();
    await run.stdout.cancel();
    await run.stderr.cancel();
    assert.deepEqual(await counts(env), [0, 0]);

    const rerun = await runCli(env.flags);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.deepEqual(await counts(env), [3000, 120000]);
    // The bulk load re-created the constraints it suspended, under their names.
    const constraints = await env.sql`
      SELECT conname, contype FROM pg_constraint
      WHERE conrelid = ${`${env.schema}.snapshots`}::regclass
        AND contype <> 'n' -- PostgreSQL 18 lists NOT NULL constraints too
      ORDER BY conname`;
    assert.deepEqual(constraints.map((c) => [c.conname, c.contype]), [
      ["snapshots_pkey", "p"],
      ["snapshots_track_id_fkey", "f"],
    ]);
  });
});

Deno.test("Ctrl-C in the middle rolls back and says so", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(2000, 30);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const gate = await holdSnapshotInserts(env);
    const run = cliCommand(env.flags).spawn();
    await gate.waitingPid();
    run.kill("SIGINT");
    const status = await run.status;
    await gate.release();
    await run.stdout.cancel();
    const stderr = await new Response(run.stderr).text();
    assert.equal(status.code, 130);
    assert.match(stderr, /interrupted: the transaction was rolled back/);
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("two runs at the same time: the second waits, then is a no-op rerun", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(2000, 30);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const gate = await holdSnapshotInserts(env);
    const first = cliCommand(env.flags).spawn();
    await gate.waitingPid(); // the first run holds the target
    const second = cliCommand([...env.flags, "--json"]).spawn();
    await waitForLockWaits(env, 2); // the second waits for it
    await gate.release();
    const [firstResult, secondResult] = await Promise.all([first.output(), second.output()]);
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    assert.equal(firstResult.code, 0, decode(firstResult.stderr));
    assert.equal(secondResult.code, 0, decode(secondResult.stderr));
    assert.match(
      decode(secondResult.stderr),
      /another migration into schema .* is running; waiting/,
    );
    const report: Report = JSON.parse(decode(secondResult.stdout));
    assert.deepEqual(report.tables.map((t) => t.inserted + t.updated), [0, 0]);
    assert.deepEqual(await counts(env), [2000, 60000]);
  });
});

Deno.test("a connection lost mid-run rolls back, exits 2 and says so", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(2000, 30);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    // A trigger makes the run wait inside its INSERT into snapshots, after tracks were written, on
    // an advisory lock this test holds: the connection is cut at that exact point, not by timing.
    const gate = await holdSnapshotInserts(env);
    const run = cliCommand(env.flags).spawn();
    const pid = await gate.waitingPid();
    await env.sql`SELECT pg_terminate_backend(${pid})`;
    await gate.release();
    const status = await run.status;
    const stderr = await new Response(run.stderr).text();
    await run.stdout.cancel();
    assert.equal(status.code, 2, stderr);
    assert.match(stderr, /connection was lost; the transaction was rolled back/);
    assert.ok(!stderr.includes("    at "), "no stack trace");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

/** Waits until `count` sessions wait for an advisory lock; returns their pids. */
async function waitForLockWaits(env: Env, count: number): Promise<number[]> {
  for (let tries = 0; tries < 1500; tries++) {
    const waiting = await env.sql`
      SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted ORDER BY pid`;
    if (waiting.length >= count) return waiting.map((row) => row.pid);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${count} session(s) never came to wait for a lock`);
}

/** Installs a statement trigger that makes INSERTs into snapshots wait until release(). */
async function holdSnapshotInserts(env: Env) {
  const key = 4_2424_2424;
  await env.sql.unsafe(`
    CREATE FUNCTION ${env.schema}.gate() RETURNS trigger LANGUAGE plpgsql
      AS 'BEGIN PERFORM pg_advisory_xact_lock(${key}); RETURN NULL; END';
    CREATE TRIGGER gate BEFORE INSERT ON ${env.schema}.snapshots
      FOR EACH STATEMENT EXECUTE FUNCTION ${env.schema}.gate()`);
  const holder = await env.sql.reserve();
  await holder`SELECT pg_advisory_lock(${key})`;
  return {
    async waitingPid(): Promise<number> {
      const [waiting] = await waitForLockWaits(env, 1);
      return waiting;
    },
    async release() {
      await holder`SELECT pg_advisory_unlock(${key})`;
      holder.release();
    },
  };
}

Deno.test("a connection lost while COPY streams rolls back, exits 2 and says so", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(4000, 40);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const run = await spawnUntil(env.flags, (line) => line.startsWith("reading"));
    let terminated = 0;
    for (let tries = 0; tries < 250 && terminated === 0; tries++) {
      terminated = (await env.sql`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND query LIKE 'COPY migrate_stage%'`).length;
      if (terminated === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(terminated, 1, "the COPY was caught in flight");
    const cut = performance.now();
    await run.lines.cancel();
    const status = await run.child.status;
    // It used to wait out postgres.js's 5 s close timeout for the query cut off.
    const seconds = (performance.now() - cut) / 1000;
    assert.ok(seconds < 3, `exited ${seconds.toFixed(1)} s after the connection was lost`);
    const stderr = await new Response(run.child.stderr).text();
    assert.equal(status.code, 2, stderr);
    assert.match(stderr, /connection was lost; the transaction was rolled back/);
    assert.ok(!stderr.includes("    at "), "no stack trace");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("the SQLite file is not modified, and an empty source migrates to empty tables", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [], []);
    const before = await Deno.readFile(env.sqlitePath);
    const report = await migrate(env.options);
    assert.equal(report.ok, true);
    assert.deepEqual(report.tables.map((t) => t.read), [0, 0]);
    assert.deepEqual(await Deno.readFile(env.sqlitePath), before);
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("progress is a live line on a terminal and absent on a pipe", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(500, 10);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const piped = await runCli(env.flags);
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(!piped.stderr.includes("rows/s"), "no progress on a pipe");

    await env.sql.unsafe(`TRUNCATE ${env.schema}.snapshots, ${env.schema}.tracks`);
    // script(1) gives the CLI a terminal and records what it shows there.
    const command = [Deno.execPath(), "run", "-A", "--config", DENO_JSON, MIGRATE_TS, ...env.flags]
      .map((arg) => `'${arg}'`).join(" ");
    const tty = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const screen = new TextDecoder().decode(tty.stdout);
    assert.equal(tty.code, 0, screen);
    assert.match(screen, /tracks 500\/500 {2}snapshots 5000\/5000 {2}\d+ rows\/s {2}ETA 0s/);
  });
});

// --- issue #5: dry run ---------------------------------------------------------

Deno.test("--dry-run reports what would change and leaves the target byte for byte", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    await migrate(env.options);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(
      "UPDATE tracks SET name = 'new' WHERE track_id = 'a'; DELETE FROM tracks WHERE track_id = 'b'",
    );
    insertRows(db, [track("c")], []);
    db.close();
    const dump = () =>
      env.sql.unsafe(`SELECT t::text FROM ${env.schema}.tracks t ORDER BY track_id COLLATE "C"`);
    const before = await dump();
    const result = await runCli([...env.flags, "--dry-run", "--prune"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /tracks\s+2\s+1\s+1\s+0\s+0\s+1/);
    assert.match(result.stdout, /Dry run: rolled back, PostgreSQL is unchanged/);
    assert.deepEqual(await dump(), before);
  });
});

// --- the standalone binary ----------------------------------------------------

/**
 * Compiles once. Only a failed download of the denort runtime (our machines
 * cannot reach Deno's download host) makes the test ignored; any other
 * compile error fails it.
 */
async function compileBinary(): Promise<{ path: string; error?: string; ignored?: string }> {
  const dir = await Deno.makeTempDir({ prefix: "migrate_bin_" });
  const path = `${dir}/migrate`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "-A", "--config", DENO_JSON, "--output", path, MIGRATE_TS],
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code === 0) return { path };
  const text = new TextDecoder().decode(stderr);
  const cause = [...text.split("Stack backtrace")[0].matchAll(/^\s*\d+: (.+)$/gm)].at(-1)?.[1] ??
    text.trim();
  return /denort/.test(text) && /error sending request|dns error|Connect/.test(text)
    ? { path, ignored: `deno compile cannot download its denort runtime here (${cause})` }
    : { path, error: text };
}

const binary = await compileBinary();

Deno.test({
  name: `the compiled binary runs a real migration${
    binary.ignored ? ` (ignored: ${binary.ignored})` : ""
  }`,
  ignore: binary.ignored !== undefined,
  fn: async () => {
    assert.equal(binary.error, undefined, binary.error);
    await withTarget(async (env) => {
      writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
      // The binary reads .env from its working directory, like `deno run`.
      await Deno.writeTextFile(`${env.dir}/.env`, `DATABASE_URL=${TEST_DATABASE_URL}\n`);
      const { code, stdout, stderr } = await new Deno.Command(binary.path, {
        args: ["--sqlite", env.sqlitePath, "--schema", env.schema],
        cwd: env.dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      assert.match(new TextDecoder().decode(stdout), /Migration committed/);
      assert.deepEqual(await counts(env), [1, 1]);
    });
  },
});

Deno.test("maskUrl() hides the password and nothing else", () => {
  assert.equal(
    maskUrl("postgresql://u:p%40ss@h:5432/db?sslmode=require"),
    "postgresql://u:***@h:5432/db?sslmode=require",
  );
  assert.equal(maskUrl("postgresql://localhost/db"), "postgresql://localhost/db");
  assert.equal(maskUrl("postgres://user@h/db"), "postgres://user@h/db");
});
