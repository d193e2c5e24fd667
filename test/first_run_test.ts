// First runs into an empty target: every column of every row arrives exactly,
// the fast path and the careful path agree, --dry-run leaves the target as it was.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { migrate, type Report } from "../migrate.ts";
import {
  assertStrategy,
  bulkRows,
  contentOf,
  counts,
  incompressible,
  rowVersions,
  runCli,
  shapeOf,
  snapshot,
  targetRows,
  TEST_DATABASE_URL,
  type Track,
  track,
  TRICKY_TEXT,
  tutorialTarget,
  withTarget,
  writeSqlite,
} from "./support.ts";

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

Deno.test("--dry-run reports what would change and leaves the target byte for byte", async () => {
  await withTarget(async (env) => {
    await env.sql.unsafe(`ALTER TABLE ${env.schema}.tracks ADD COLUMN id BIGSERIAL`);
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec("ALTER TABLE tracks ADD COLUMN id INTEGER; UPDATE tracks SET id = rowid + 500");
    await migrate(env.options);
    // Every kind of write in both tables: an update, an insert (with an id
    // past the sequence), a prune.
    db.exec(`UPDATE tracks SET name = 'new' WHERE track_id = 'a';
      UPDATE snapshots SET rank = 7 WHERE track_id = 'a';
      DELETE FROM snapshots WHERE track_id = 'b'; DELETE FROM tracks WHERE track_id = 'b';
      INSERT INTO tracks (track_id, name, artist_name, id) VALUES ('c', 'C', 'x', 900);
      INSERT INTO snapshots VALUES ('c', '2024-03-02', 'short_term', 1)`);
    db.close();
    const dump = async () => ({
      rows: await env.sql.unsafe(
        `SELECT r FROM (SELECT t::text FROM ${env.schema}.tracks t
           UNION ALL SELECT s::text FROM ${env.schema}.snapshots s) rows (r)
         ORDER BY r COLLATE "C"`,
      ),
      // Each row's xmin: a row rewritten with the same values shows too.
      versions: await rowVersions(env),
      sequence: await env.sql.unsafe(
        `SELECT last_value::int AS last, is_called FROM ${env.schema}.tracks_id_seq`,
      ),
    });
    const before = await dump();
    const result = await runCli([...env.flags, "--dry-run", "--prune"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /tracks\s+2\s+1\s+1\s+0\s+0\s+1/);
    assert.match(result.stdout, /Dry run: rolled back, PostgreSQL is unchanged/);
    assert.deepEqual(await dump(), before);
  });
});

Deno.test("a first run with more snapshot text than is made ahead stays on the fast path, every row intact", async () => {
  await withTarget(async (env) => {
    // 22 MiB of snapshot lines that deflate to 18 through 16 MiB made ahead:
    // the buffer is sent, refilled round the end while tracks are verified,
    // then the rest follows.
    const [tracks, short] = bulkRows(100, 84);
    const snapshots = short.map((s, i) => ({
      ...s,
      time_range: String(s.time_range) + incompressible(2600, i + 1),
    }));
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const steps: string[] = [];
    const report = await migrate({ ...env.options, onStep: (line) => steps.push(line) });
    assert.ok(
      steps.some((line) => line.startsWith("verifying tracks against SQLite while reading")),
    );
    assertStrategy(report, "direct");
    assert.equal(report.verification.ok, true);
    const { snapshots: stored } = await targetRows(env);
    assert.equal(stored.length, snapshots.length);
    const key = (s: Record<string, unknown>) =>
      [s.track_id, s.snapshot_date, s.time_range, Number(s.rank)].join("|");
    assert.deepEqual(stored.map((r) => key(r)).sort(), snapshots.map((r) => key({ ...r })).sort());
  });
});

/** The trigger many apps add to keep updated_at current. */
const TOUCH_TRIGGER = `
  CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$;
  CREATE TRIGGER tracks_touch BEFORE UPDATE ON tracks FOR EACH ROW EXECUTE FUNCTION touch();`;

// Kills: a fast path that loads or compares otherwise than the careful path (its result is
// checked against the careful path's on the same data, for a first run, an unchanged rerun
// and a rerun with changes, into the tutorial's schema with its CHECK, GIN index, foreign
// key and an updated_at trigger).
Deno.test("the fast paths leave the same target and report as the careful path", async () => {
  const [tracks, snapshots] = bulkRows(600, 20); // 12,000 snapshots: a bulk load
  const runs: { steps: string[]; report: Report; content: unknown; shape: string[] }[][] = [];
  for (const careful of [false, true]) {
    await withTarget(async (env) => {
      await tutorialTarget(env, TOUCH_TRIGGER);
      writeSqlite(env.sqlitePath, tracks, snapshots);
      const results = [];
      for (const change of [null, null, "change"]) {
        if (change) {
          const db = new DatabaseSync(env.sqlitePath);
          db.exec(`UPDATE tracks SET name = 'renamed' WHERE track_id = 'bulk000007';
                   DELETE FROM snapshots WHERE track_id = 'bulk000009';
                   DELETE FROM tracks WHERE track_id = 'bulk000009';
                   UPDATE snapshots SET rank = rank + 100 WHERE track_id = 'bulk000011';
                   INSERT INTO snapshots VALUES ('bulk000013', '2025-01-01', 'long_term', 5)`);
          db.close();
        }
        const steps: string[] = [];
        const report = await migrate({
          ...env.options,
          careful,
          prune: true,
          onStep: (line) => steps.push(line),
        });
        results.push({
          steps,
          report,
          content: await contentOf(env),
          shape: (await shapeOf(env.sql, env.schema)).map((l) => l.replaceAll(env.schema, "S")),
        });
      }
      runs.push(results);
    }, { tables: false });
  }
  const [fast, careful] = runs;
  const summary = (r: Report) => ({
    tables: r.tables.map(({ seconds: _, strategy: _s, differingBuckets: _d, ...t }) => t),
    counts: r.verification.counts,
    ok: r.ok,
    jsonObjects: r.verification.jsonObjects,
    sample: r.verification.sample,
  });
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(fast[i].content, careful[i].content, `run ${i + 1}: the same rows`);
    assert.deepEqual(fast[i].shape, careful[i].shape, `run ${i + 1}: the same indexes, keys`);
    assert.deepEqual(summary(fast[i].report), summary(careful[i].report), `run ${i + 1}`);
    assertStrategy(careful[i].report, "careful");
  }
  assertStrategy(fast[0].report, "direct");
  assertStrategy(fast[1].report, "buckets");
  assert.deepEqual(fast[1].report.tables.map((t) => t.differingBuckets), [0, 0], "nothing staged");
  assertStrategy(fast[2].report, "buckets");
  assert.ok(fast[2].report.tables[1].differingBuckets! > 0, "the snapshots' buckets are staged");
  assert.deepEqual(
    fast[2].report.tables.map((t) => [t.inserted, t.updated, t.pruned]),
    [[0, 1, 1], [1, 20, 20]],
  );
});

Deno.test("the report says why a fast path gave way to the careful one: a first run's reason, a rerun's reason", async () => {
  await withTarget(async (env) => {
    // A policy to apply hands a first run to the careful path, which applies it.
    writeSqlite(env.sqlitePath, [track("a"), track("bad", { raw_json: "{" })], [snapshot("a")]);
    const first = await migrate({ ...env.options, invalidJson: "null" });
    assert.deepEqual(first.tables.map((t) => t.strategy), ["careful", "careful"]);
    assert.equal(first.carefulBecause, "tracks: raw_json is not valid JSON for PostgreSQL's JSONB");
    // On a rerun the first-run path does not apply; the rerun's own reason is reported.
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`UPDATE tracks SET raw_json = '[' WHERE track_id = 'a'`);
    db.close();
    const rerun = await migrate({ ...env.options, invalidJson: "null" });
    assert.deepEqual(rerun.tables.map((t) => t.strategy), ["careful", "careful"]);
    assert.equal(rerun.carefulBecause, "tracks: raw_json is not valid JSON for PostgreSQL's JSONB");
  });
});
