// The target's own schema: the tutorial's, drifted ones, extra or missing
// columns, any schema name, --create-schema.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { migrate } from "../migrate.ts";
import { createTableDdl, TABLES } from "../src/tables.ts";
import {
  bulkRows,
  counts,
  insertRows,
  rejectsWith,
  rowVersions,
  runCli,
  shapeOf,
  snapshot,
  track,
  tutorialTarget,
  withTarget,
  writeSqlite,
} from "./support.ts";

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

Deno.test("the tutorial's schema: a bulk first run keeps every index and constraint, a rerun rewrites nothing", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(
      env,
      `ALTER TABLE snapshots CLUSTER ON idx_snapshots_date;
       ALTER TABLE snapshots REPLICA IDENTITY USING INDEX snapshots_pkey`,
    );
    // 10,000 tracks and 12,000 snapshots: both tables take the bulk path.
    const tracks = Array.from(
      { length: 10_000 },
      (_, i) => track(`t${String(i).padStart(5, "0")}`),
    );
    const snapshots = tracks.slice(0, 6_000).flatMap((t) => [
      snapshot(t.track_id as string, { rank: 1 }),
      snapshot(t.track_id as string, { time_range: "long_term", rank: 2 }),
    ]);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const before = await shapeOf(env.sql, env.schema);
    assert.ok(before.some((line) => line.includes("USING gin (raw_json)")));

    const first = await migrate(env.options);
    assert.ok(first.ok);
    assert.deepEqual(first.tables.map((t) => [t.table, t.inserted]), [
      ["tracks", 10_000],
      ["snapshots", 12_000],
    ]);
    assert.deepEqual(await shapeOf(env.sql, env.schema), before);
    const [varchar] = await env.sql.unsafe(
      `SELECT count(*)::int AS n FROM ${env.schema}.tracks WHERE raw_json @> '{"explicit": false}'`,
    );
    assert.equal(varchar.n, 10_000);

    const versions = await rowVersions(env);
    const rerun = await migrate(env.options);
    assert.ok(rerun.ok);
    assert.deepEqual(rerun.tables.map((t) => [t.inserted, t.updated, t.unchanged]), [
      [0, 0, 10_000],
      [0, 0, 12_000],
    ]);
    assert.deepEqual(await rowVersions(env), versions, "no row was rewritten");
    assert.deepEqual(await shapeOf(env.sql, env.schema), before);
  }, { tables: false });
});

Deno.test("columns: PostgreSQL must be able to fill what SQLite lacks; shared extra columns are carried over; SQLite-only columns stop the run unless ignored", async (t) => {
  await withTarget(async (env) => {
    await tutorialTarget(
      env,
      `
      ALTER TABLE tracks ADD COLUMN popularity SMALLINT;
      ALTER TABLE snapshots ADD COLUMN note TEXT NOT NULL DEFAULT ''`,
    );
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`ALTER TABLE tracks ADD COLUMN popularity INTEGER;
      UPDATE tracks SET popularity = 70 WHERE track_id = 'a';
      UPDATE tracks SET popularity = 40000 WHERE track_id = 'b';
      ALTER TABLE tracks ADD COLUMN legacy_id INTEGER`);
    db.close();

    await t.step(
      "a SQLite column with no place is named, with the flag that acknowledges it",
      async () => {
        const error = await rejectsWith(migrate(env.options), "config");
        assert.match(error.message, /SQLite column tracks\.legacy_id has no column in PostgreSQL/);
        assert.match(error.message, /--ignore-columns tracks\.legacy_id/);
      },
    );
    await t.step(
      "a name --ignore-columns does not find is a typo, not an acknowledgement",
      async () => {
        const error = await rejectsWith(
          migrate({ ...env.options, ignoreColumns: ["tracks.legacy_idd"] }),
          "config",
        );
        assert.match(
          error.message,
          /--ignore-columns names tracks\.legacy_idd, which no SQLite table has/,
        );
      },
    );
    await t.step("the shared extra column is validated against its own type", async () => {
      const error = await rejectsWith(
        migrate({ ...env.options, ignoreColumns: ["tracks.legacy_id"] }),
        "data",
      );
      assert.deepEqual(error.problems.map((g) => [g.kind, g.examples.map((p) => p.key)]), [
        ["out-of-range", ["b"]],
      ]);
      assert.match(error.problems[0].examples[0].value!, /does not fit smallint/);
    });
    await t.step("then carried over; the report names what was ignored and filled", async () => {
      const db = new DatabaseSync(env.sqlitePath);
      db.exec("UPDATE tracks SET popularity = 40 WHERE track_id = 'b'");
      db.close();
      const report = await migrate({ ...env.options, ignoreColumns: ["legacy_id"] });
      assert.ok(report.ok);
      assert.deepEqual(report.columns[0].ignored, ["legacy_id"]);
      assert.deepEqual(report.columns[0].filledByPostgres, ["updated_at"]);
      assert.ok(report.columns[0].migrated.includes("created_at"));
      assert.deepEqual(report.columns[1].filledByPostgres, ["note"]);
      const rows = await env.sql.unsafe(
        `SELECT track_id, popularity FROM ${env.schema}.tracks ORDER BY 1`,
      );
      assert.deepEqual(rows.map((r) => [r.track_id, r.popularity]), [["a", 70], ["b", 40]]);
    });
    await t.step(
      "a NOT NULL column without a default that SQLite lacks is a setup error",
      async () => {
        await env.sql.unsafe(`ALTER TABLE ${env.schema}.snapshots ADD COLUMN mood TEXT NOT NULL
        DEFAULT 'x'; ALTER TABLE ${env.schema}.snapshots ALTER COLUMN mood DROP DEFAULT`);
        const result = await runCli([...env.flags, "--ignore-columns", "legacy_id"]);
        assert.equal(result.code, 2, result.stderr);
        assert.match(
          result.stderr,
          /PostgreSQL column \S+\.snapshots\.mood is NOT NULL without a default, and SQLite has no such column/,
        );
        assert.ok(!result.stdout.includes("reading SQLite"), "no data was read");
      },
    );
  }, { tables: false });
});

Deno.test("a column type migrate.ts cannot fill is a setup error naming the column and what works", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(env, "ALTER TABLE tracks ALTER COLUMN duration_ms TYPE NUMERIC");
    writeSqlite(env.sqlitePath, [track("a")], []);
    const error = await rejectsWith(migrate(env.options), "config");
    assert.match(
      error.message,
      /PostgreSQL column \S+\.tracks\.duration_ms is numeric, which migrate.ts cannot fill with tracks\.duration_ms: use smallint, integer or bigint/,
    );
  }, { tables: false });
});

Deno.test("drifted targets: BIGINT, wider VARCHAR, an enum, json instead of jsonb, a UNIQUE constraint, a serial id", async () => {
  await withTarget(async (env) => {
    await env.sql.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL search_path TO ${env.schema};
        CREATE TYPE time_range_t AS ENUM ('short_term', 'medium_term', 'long_term');
        CREATE TABLE tracks (id BIGSERIAL, track_id VARCHAR(100) UNIQUE NOT NULL,
          name TEXT NOT NULL, artist_name TEXT NOT NULL, album_name TEXT, duration_ms BIGINT,
          spotify_url TEXT UNIQUE, raw_json JSON, created_at TIMESTAMP,
          updated_at TIMESTAMPTZ DEFAULT NOW());
        CREATE TABLE snapshots (track_id VARCHAR(100) REFERENCES tracks (track_id),
          snapshot_date DATE, time_range time_range_t, rank BIGINT,
          PRIMARY KEY (track_id, snapshot_date, time_range))`);
    });
    const tracks = [
      track("a", { duration_ms: 2 ** 40, raw_json: '{"b": 1,  "a": [1.50]}' }),
      track("b", { spotify_url: "https://open.spotify.com/track/a" }),
      track("c"),
    ];
    writeSqlite(env.sqlitePath, tracks, [snapshot("a", { time_range: "all_time" })]);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec("ALTER TABLE tracks ADD COLUMN id INTEGER; UPDATE tracks SET id = rowid + 100");
    db.close();
    const error = await rejectsWith(migrate(env.options), "data");
    assert.deepEqual(
      error.problems.map((g) => [g.kind, g.examples.map((p) => p.key).sort()]),
      [["not-allowed", ["a/2024-03-01/all_time"]], ["unique-violation", ["a", "b"]]],
    );
    assert.match(error.problems[1].examples[0].constraint!, /^tracks_spotify_url_key: /);

    const fixed = new DatabaseSync(env.sqlitePath);
    fixed.exec(`UPDATE snapshots SET time_range = 'long_term';
      UPDATE tracks SET spotify_url = NULL WHERE track_id = 'b'`);
    fixed.close();
    const report = await migrate(env.options);
    assert.ok(report.ok);
    const [row] = await env.sql.unsafe(
      `SELECT duration_ms::text, raw_json::text FROM ${env.schema}.tracks WHERE track_id = 'a'`,
    );
    assert.deepEqual([row.duration_ms, row.raw_json], [String(2 ** 40), '{"b": 1,  "a": [1.50]}']);
    const [{ next }] = await env.sql.unsafe(
      `SELECT nextval(pg_get_serial_sequence('${env.schema}.tracks', 'id'))::int AS next`,
    );
    assert.ok(next > 103, `the id sequence moved past SQLite's ids (next ${next})`);
    const rerun = await migrate(env.options);
    assert.deepEqual(rerun.tables.map((t) => t.unchanged), [3, 1]);
  }, { tables: false });
});

Deno.test("a unique index another table's foreign key depends on stays: a bulk first run keeps it, a swap under it is PostgreSQL's refusal", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(
      env,
      `CREATE UNIQUE INDEX tracks_url ON tracks (spotify_url);
       CREATE TABLE plays (url TEXT REFERENCES tracks (spotify_url))`,
    );
    const [tracks] = bulkRows(10_000, 0);
    writeSqlite(env.sqlitePath, tracks, []);
    assert.ok((await migrate(env.options)).ok, "a bulk first run");
    const shape = await shapeOf(env.sql, env.schema);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`UPDATE tracks SET spotify_url = CASE track_id
      WHEN 'bulk000000' THEN 'https://open.spotify.com/track/bulk000001'
      WHEN 'bulk000001' THEN 'https://open.spotify.com/track/bulk000000' ELSE spotify_url END`);
    db.close();
    const error = await rejectsWith(migrate(env.options), "data");
    assert.match(error.message, /PostgreSQL refused the data: duplicate key .* "tracks_url"/);
    assert.deepEqual(await shapeOf(env.sql, env.schema), shape);
  }, { tables: false });
});

Deno.test("any schema name works, quoted everywhere: a space, a dot, a double quote", async () => {
  const names = ["Music Data", "a.b", 'x"; DROP TABLE public.tracks CASCADE; --'];
  for (const schema of names) {
    await withTarget(async (env) => {
      writeSqlite(env.sqlitePath, bulkRows(2, 2)[0], bulkRows(2, 2)[1]);
      const options = { ...env.options, schema, createSchema: true };
      try {
        const report = await migrate(options);
        assert.ok(report.ok, schema);
        const rerun = await migrate(options);
        assert.deepEqual(rerun.tables.map((t) => t.unchanged), [2, 4]);
        const [{ n }] = await env.sql`
          SELECT count(*)::int AS n FROM ${env.sql(schema)}.${env.sql("tracks")}`.catch(() =>
          env.sql.unsafe(
            `SELECT count(*)::int AS n FROM "${schema.replaceAll('"', '""')}".tracks`,
          )
        );
        assert.equal(n, 2);
      } finally {
        await env.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema.replaceAll('"', '""')}" CASCADE`);
      }
    }, { tables: false });
  }
});

Deno.test("--create-schema creates the tutorial's tables: VARCHAR keys, CHECK (rank > 0), timestamps, indexes", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    assert.ok((await migrate({ ...env.options, createSchema: true })).ok);
    const columns = await env.sql`
      SELECT table_name || '.' || column_name || ' ' || format_type(a.atttypid, a.atttypmod)
             || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS c
      FROM information_schema.columns ic
      JOIN pg_attribute a ON a.attrelid = (quote_ident(table_schema) || '.' || quote_ident(table_name))::regclass
        AND a.attname = ic.column_name
      WHERE table_schema = ${env.schema} ORDER BY table_name, ordinal_position`;
    assert.deepEqual(columns.map((r) => r.c), [
      "snapshots.track_id character varying(64) not null",
      "snapshots.snapshot_date date not null",
      "snapshots.time_range character varying(32) not null",
      "snapshots.rank integer not null",
      "tracks.track_id character varying(64) not null",
      "tracks.name text not null",
      "tracks.artist_name text not null",
      "tracks.album_name text",
      "tracks.duration_ms integer",
      "tracks.spotify_url text",
      "tracks.raw_json jsonb",
      "tracks.created_at timestamp with time zone not null",
      "tracks.updated_at timestamp with time zone not null",
    ]);
    const shape = (await shapeOf(env.sql, env.schema)).join("\n");
    assert.match(shape, /CHECK \(\(rank > 0\)\)/);
    assert.match(shape, /FOREIGN KEY \(track_id\) REFERENCES/);
    assert.match(shape, /USING gin \(raw_json\)/);
    assert.match(shape, /snapshots_date_idx ON \S+ USING btree \(snapshot_date\)/);
  }, { tables: false });
});

Deno.test("the app's own file: SQLite's row id (snapshots.id INTEGER PRIMARY KEY AUTOINCREMENT) is not migrated, without a flag; other lost columns still stop the run", async (t) => {
  await withTarget(async (env) => {
    await tutorialTarget(env);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`
      CREATE TABLE tracks (track_id TEXT PRIMARY KEY, name TEXT NOT NULL, artist_name TEXT NOT NULL,
        album_name TEXT, duration_ms INTEGER, spotify_url TEXT, raw_json TEXT,
        created_at TEXT DEFAULT CURRENT_TIMESTAMP);
      CREATE TABLE snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT, track_id TEXT NOT NULL,
        snapshot_date TEXT NOT NULL, time_range TEXT NOT NULL, rank INTEGER NOT NULL,
        UNIQUE (track_id, snapshot_date, time_range));`);
    insertRows(db, [track("a")], [
      snapshot("a"),
      snapshot("a", { rank: 2, time_range: "long_term" }),
    ]);
    db.close();

    await t.step("migrated without --ignore-columns; the plan line says why id stays", async () => {
      const result = await runCli(env.flags);
      assert.equal(result.code, 0, result.stderr);
      assert.match(
        result.stdout,
        /snapshots: 2 rows; migrating .*; not migrated: id \(SQLite's row id; PostgreSQL keys snapshots by track_id, snapshot_date, time_range\)/,
      );
      const report = await migrate(env.options);
      assert.deepEqual(report.columns[1].rowIds, ["id"]);
      assert.deepEqual(report.columns[1].ignored, []);
      assert.deepEqual(await counts(env), [1, 2]);
    });
    await t.step("--ignore-columns snapshots.id keeps working", async () => {
      const report = await migrate({ ...env.options, ignoreColumns: ["snapshots.id"] });
      assert.ok(report.ok);
      assert.deepEqual(report.columns[1].ignored, ["id"]);
      assert.deepEqual(report.columns[1].rowIds, []);
    });
    await t.step(
      "an id that is not the row id (INTEGER, not the key) still stops the run",
      async () => {
        const db = new DatabaseSync(env.sqlitePath);
        db.exec("ALTER TABLE tracks ADD COLUMN id INTEGER");
        db.close();
        const error = await rejectsWith(migrate(env.options), "config");
        assert.match(error.message, /SQLite column tracks\.id has no column in PostgreSQL/);
        assert.doesNotMatch(error.message, /snapshots\.id/);
      },
    );
  }, { tables: false });
});

Deno.test("--create-schema prints the statements it runs; with --dry-run they are rolled back", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const schema = `${env.schema}_new`;
    const flags = [...env.flags.slice(0, -1), schema, "--create-schema"];
    const dry = await runCli([...flags, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    for (const ddl of TABLES.flatMap(createTableDdl)) {
      assert.ok(dry.stdout.includes(`${ddl};`), `prints ${ddl}`);
    }
    const [{ exists }] = await env.sql`
      SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ${schema}) AS exists`;
    assert.equal(exists, false, "a dry run creates nothing");
    try {
      const real = await runCli(flags);
      assert.equal(real.code, 0, real.stderr);
      assert.match(
        real.stdout,
        /CREATE TABLE IF NOT EXISTS snapshots \(\n {2}track_id VARCHAR\(64\),/,
      );
      const again = await runCli(flags);
      assert.doesNotMatch(again.stdout, /CREATE TABLE/, "tables that exist are left as they are");
    } finally {
      await env.sql`DROP SCHEMA IF EXISTS ${env.sql(schema)} CASCADE`;
    }
  }, { tables: false });
});
