// Bad input: every offending row named by its key in one pass, nothing written;
// the policies (--invalid-json, --orphans) and the reject file.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { random } from "../tools/generate.ts";
import { migrate } from "../migrate.ts";
import {
  type CliResult,
  counts,
  problemKeys,
  rejectsWith,
  runCli,
  type Snapshot,
  snapshot,
  type SourceShape,
  targetRows,
  TEST_DATABASE_URL,
  TEST_PASSWORD,
  type Track,
  track,
  tutorialTarget,
  withTarget,
  writeSqlite,
} from "./support.ts";

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
    "-01",
    "[00]",
    "0." + "1".repeat(16383), // numeric's largest scale
    "0." + "1".repeat(16384), // one decimal too many, without an exponent
    "1".repeat(131072), // numeric's most integer digits
    "1".repeat(131073),
  ];
  const alphabet = [...'{}[],:"\\u01-.eE+ ntd8c'];
  const next = random(42);
  const candidates = [...edges];
  while (candidates.length < count) {
    let text = edges[Math.floor(next() * 12)];
    for (let edit = 0; edit < 1 + Math.floor(next() * 3); edit++) {
      const at = Math.floor(next() * (text.length + 1));
      const c = alphabet[Math.floor(next() * alphabet.length)];
      const r = next();
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

interface BadCase {
  name: string;
  tracks: Track[];
  snapshots: Snapshot[];
  shape?: SourceShape;
  /** Run on the SQLite file after the rows are in: bytes only SQL can write. */
  sql?: string;
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
    kind: "out-of-range",
    key: "bad",
  },
  {
    name: "rank beyond 2^53",
    tracks: GOOD,
    snapshots: [snapshot("good", { rank: 9223372036854775807n })],
    kind: "out-of-range",
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
    name: "NUL character in a payload after a complete document",
    tracks: [...GOOD, track("bad")],
    snapshots: [],
    sql: `UPDATE tracks SET raw_json = '{"a": 1}' || char(0) || 'x' WHERE track_id = 'bad'`,
    kind: "nul-character",
    key: "bad",
  },
  {
    name: "NUL character in a key column",
    tracks: GOOD,
    snapshots: [snapshot("good")],
    sql: `UPDATE snapshots SET time_range = time_range || char(0) || 'x'`,
    kind: "nul-character",
    key: "good/2024-03-01/short_term",
  },
  {
    name: "text with bytes that are not UTF-8",
    tracks: [...GOOD, track("bad")],
    snapshots: [],
    sql: `UPDATE tracks SET name = CAST(X'4361666E' || X'E9' AS TEXT) WHERE track_id = 'bad'`,
    kind: "invalid-utf8",
    key: "bad",
  },
  {
    name: "text with a cut-off UTF-8 sequence as long as its replacement",
    tracks: [...GOOD, track("bad")],
    snapshots: [],
    sql: `UPDATE tracks SET album_name = CAST(X'F09F9878' AS TEXT) WHERE track_id = 'bad'`,
    kind: "invalid-utf8",
    key: "bad",
  },
  {
    name: "NUL character after bytes that are not UTF-8",
    tracks: [...GOOD, track("bad")],
    snapshots: [],
    sql: `UPDATE tracks SET artist_name = CAST(X'E90061' AS TEXT) WHERE track_id = 'bad'`,
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
      if (bad.sql) {
        const db = new DatabaseSync(env.sqlitePath);
        db.exec(bad.sql);
        db.close();
      }
      const error = await rejectsWith(migrate(env.options), "data");
      assert.equal(error.exitCode, 1);
      assert.deepEqual(error.problems.map((g) => g.kind), [bad.kind]);
      assert.deepEqual(problemKeys(error), [bad.key], "exactly the bad row, no good one");
      assert.deepEqual(await counts(env), [0, 0]);
    });
  });
}

Deno.test("a value longer than its VARCHAR(n) only through trailing spaces is refused, not cut to fit", async () => {
  await withTarget(async (env) => {
    // PostgreSQL itself would store it, silently cut to n characters.
    await env.sql.unsafe(
      `ALTER TABLE ${env.schema}.tracks ALTER COLUMN album_name TYPE VARCHAR(5)`,
    );
    const padded = "abc" + " ".repeat(20);
    writeSqlite(env.sqlitePath, [
      track("good", { album_name: "abc  " }),
      track("bad", {
        album_name: padded,
      }),
    ], []);
    const error = await rejectsWith(migrate(env.options), "data");
    assert.deepEqual(error.problems.map((g) => g.kind), ["too-long"]);
    assert.deepEqual(problemKeys(error), ["bad"]);
    assert.equal(error.problems[0].examples[0].column, "album_name");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("orphan snapshots on a first run into a target without the foreign key are named; nothing is written", async () => {
  await withTarget(async (env) => {
    // Without the foreign key PostgreSQL would take them: only our check stands.
    await env.sql.unsafe(
      `ALTER TABLE ${env.schema}.snapshots DROP CONSTRAINT snapshots_track_id_fkey`,
    );
    writeSqlite(env.sqlitePath, [track("good")], [
      snapshot("good"),
      snapshot("ghost"),
      snapshot("ghost", { time_range: "long_term" }),
    ]);
    const error = await rejectsWith(migrate(env.options), "data");
    assert.deepEqual(error.problems.map((g) => g.kind), ["orphan-snapshot"]);
    assert.deepEqual(problemKeys(error), [
      "ghost/2024-03-01/long_term",
      "ghost/2024-03-01/short_term",
    ]);
    assert.deepEqual(await counts(env), [0, 0]);
    // With --orphans=skip they are left out, and the rest committed.
    const report = await migrate({ ...env.options, orphans: "skip" });
    assert.ok(report.ok);
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

Deno.test("text arrives whole: non-ASCII, a genuine U+FFFD, emoji, and a UTF-16 SQLite file", async () => {
  for (const encoding of ["UTF-8", "UTF-16le"]) {
    await withTarget(async (env) => {
      const db = new DatabaseSync(env.sqlitePath);
      db.exec(`PRAGMA encoding = '${encoding}'`);
      db.close();
      const names = ["Beyoncé", "Caf\uFFFD", "🎵 Ünïcødé", "plain"];
      const tracks = names.map((name, i) =>
        track(`t${i}`, { name, raw_json: JSON.stringify({ name, n: i }), album_name: name })
      );
      writeSqlite(env.sqlitePath, tracks, tracks.map((t) => snapshot(String(t.track_id))));
      const report = await migrate(env.options);
      assert.equal(report.verification.ok, true, encoding);
      const { tracks: rows } = await targetRows(env);
      assert.deepEqual(rows.map((r) => r.name), names, encoding);
      assert.deepEqual(rows.map((r) => JSON.parse(r.raw_json).name), names, encoding);
      // Both the first run's path and the careful one see the same text.
      const careful = await migrate({ ...env.options, careful: true });
      assert.equal(careful.tables.find((t) => t.table === "tracks")?.unchanged, names.length);
    });
  }
});

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
      db.exec(`CREATE TABLE tracks (track_id TEXT, name TEXT);
        CREATE TABLE snapshots (track_id TEXT, snapshot_date TEXT, time_range TEXT, rank INT)`);
      db.close();
      oneError(
        await runCli([...env.flags, "--sqlite", `${env.dir}/partial.db`]),
        /PostgreSQL column \S+\.tracks\.artist_name is NOT NULL without a default, and SQLite has no such column/,
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
    await t.step("a port that accepts and hangs up (not PostgreSQL) fails at once", async () => {
      // postgres.js reconnected forever, its timeout restarted on each close.
      const rude = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      let accepted = 0;
      const accepting = (async () => {
        for await (const conn of rude) {
          // Without the fix the run would reconnect forever: after ten, the
          // listener goes, so the run ends (refused) and the test fails.
          if (++accepted === 10) rude.close();
          await conn.read(new Uint8Array(64)).catch(() => null);
          conn.close();
        }
      })();
      const url = new URL(TEST_DATABASE_URL);
      url.host = `127.0.0.1:${(rude.addr as Deno.NetAddr).port}`;
      const r = await runCli([...env.flags, "--database-url", url.href, "--connect-timeout", "30"]);
      if (accepted < 10) rude.close();
      await accepting.catch(() => {});
      oneError(
        r,
        /closed the connection before PostgreSQL's handshake ended[\s\S]*is that PostgreSQL's port/,
      );
      assert.equal(r.code, 2);
      // sslmode=prefer: one try with TLS, one without.
      assert.ok(accepted <= 2, `${accepted} connections`);
    });
    await t.step("missing target table names it", async () => {
      oneError(
        await runCli([...env.flags, "--schema", "public_nonexistent"]),
        /PostgreSQL schema public_nonexistent does not exist/,
      );
    });
  });
});

Deno.test("rows the target's types and CHECK constraints refuse are all named by key; nothing is written", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(env);
    const long = "x".repeat(65);
    writeSqlite(env.sqlitePath, [track("good"), track(long), track("é".repeat(64))], [
      snapshot("good", { rank: 0 }),
      snapshot("good", { time_range: "long_term", rank: -3 }),
      snapshot("good", { time_range: "r".repeat(33) }),
      snapshot("good", { time_range: "medium_term", rank: 5 }),
    ]);
    const error = await rejectsWith(migrate(env.options), "data");
    const byKind = Object.fromEntries(
      error.problems.map((g) => [g.kind, g.examples.map((p) => p.key)]),
    );
    assert.deepEqual(byKind, {
      "too-long": [long, `good/2024-03-01/${"r".repeat(33)}`],
      "check-violation": ["good/2024-03-01/long_term", "good/2024-03-01/short_term"],
    });
    const tooLong = error.problems.find((g) => g.kind === "too-long")!.examples[0];
    assert.equal(tooLong.column, "track_id");
    assert.match(tooLong.value!, /65 characters; character varying\(64\) holds 64/);
    const check = error.problems.find((g) => g.kind === "check-violation")!.examples[0];
    assert.equal(check.constraint, "snapshots_rank_check: CHECK ((rank > 0))");
    assert.deepEqual(await counts(env), [0, 0]);
  }, { tables: false });
});

Deno.test("--reject-file lists every problem row, as JSON lines or CSV", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(env);
    const bad = Array.from({ length: 25 }, (_, i) =>
      snapshot("good", {
        snapshot_date: `2024-01-${String(i + 1).padStart(2, "0")}`,
        rank: 0,
      }));
    writeSqlite(env.sqlitePath, [track("good"), track("bad", { raw_json: "{" })], bad);
    const jsonl = `${env.dir}/rejects.jsonl`;
    const result = await runCli([...env.flags, "--reject-file", jsonl]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /row violates a CHECK constraint of the PostgreSQL table \(25 rows\)/,
    );
    assert.match(result.stderr, /… and 5 more/);
    assert.match(result.stderr, new RegExp(`every problem row is listed in ${jsonl}`));
    const lines = (await Deno.readTextFile(jsonl)).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 26);
    assert.deepEqual(
      lines.filter((l) => l.kind === "check-violation").map((l) => l.key),
      bad.map((s) => `good/${s.snapshot_date}/short_term`),
    );
    assert.deepEqual(lines.find((l) => l.kind === "invalid-json").key, "bad");
    const check = lines.find((l) => l.kind === "check-violation");
    assert.deepEqual(
      [check.track_id, check.snapshot_date, check.time_range, check.value],
      ["good", "2024-01-01", "short_term", "rank = 0"],
      "the key column by column, and the value the constraint judged",
    );
    const json = lines.find((l) => l.kind === "invalid-json");
    assert.deepEqual([json.value, json.problem], [
      "{",
      "raw_json is not valid JSON for PostgreSQL's JSONB",
    ]);
    assert.match(json.detail, /^ends early/);

    const csv = `${env.dir}/rejects.csv`;
    assert.equal((await runCli([...env.flags, "--reject-file", csv])).code, 1);
    const rows = (await Deno.readTextFile(csv)).trim().split("\n");
    assert.equal(
      rows[0],
      "action,table,key,track_id,snapshot_date,time_range,kind,problem,column,value,detail,constraint",
    );
    assert.equal(rows.length, 27);
    assert.ok(rows.includes(
      "refused,snapshots,good/2024-01-25/short_term,good,2024-01-25,short_term,check-violation,row violates a CHECK constraint of the PostgreSQL table,,rank = 0,,snapshots_rank_check: CHECK ((rank > 0))",
    ));
    assert.deepEqual(await counts(env), [0, 0]);
  }, { tables: false });
});

Deno.test("a timestamp with more fractional digits than timestamp(p) keeps is refused, not rounded", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(env, "ALTER TABLE tracks ALTER COLUMN created_at TYPE timestamp(0)");
    writeSqlite(env.sqlitePath, [track("a"), track("b"), track("c")], []);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`UPDATE tracks SET created_at = CASE track_id
      WHEN 'a' THEN '2024-01-31 09:05:00.25' WHEN 'b' THEN '2024-01-31 09:05:00.000'
      ELSE '2024-01-31 09:05:00' END`);
    db.close();
    const error = await rejectsWith(migrate(env.options), "data");
    assert.deepEqual(
      error.problems.map((g) => [g.kind, g.examples.map((p) => [p.key, p.column, p.value])]),
      [["too-precise", [[
        "a",
        "created_at",
        '"2024-01-31 09:05:00.25" (timestamp(0) without time zone keeps 0 fractional digits)',
      ]]]],
    );
    assert.deepEqual(await counts(env), [0, 0]);
    const fixed = new DatabaseSync(env.sqlitePath);
    fixed.exec("UPDATE tracks SET created_at = '2024-01-31 09:05:01' WHERE track_id = 'a'");
    fixed.close();
    assert.ok((await migrate(env.options)).ok);
    const rows = await env.sql.unsafe(
      `SELECT track_id, created_at::text AS at FROM ${env.schema}.tracks ORDER BY track_id`,
    );
    assert.deepEqual(rows.map((r) => r.at), [
      "2024-01-31 09:05:01",
      "2024-01-31 09:05:00",
      "2024-01-31 09:05:00",
    ]);
  }, { tables: false });
});

Deno.test("keys equal only as the target compares them (char(n) ignores trailing spaces) are duplicate keys, named, on a first run and a rerun", async () => {
  await withTarget(async (env) => {
    await tutorialTarget(env, "ALTER TABLE tracks ALTER COLUMN track_id TYPE CHAR(22)");
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    assert.ok((await migrate(env.options)).ok);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`INSERT INTO tracks (track_id, name, artist_name) VALUES ('b ', 'Song b again', 'x')`);
    db.close();
    for (const what of ["rerun", "first run"]) {
      if (what === "first run") {
        await env.sql.unsafe(`TRUNCATE ${env.schema}.snapshots, ${env.schema}.tracks`);
      }
      const error = await rejectsWith(migrate(env.options), "data");
      assert.deepEqual(
        error.problems.map((g) => [g.kind, g.examples.map((p) => [p.key, p.value])]),
        [["duplicate-key", [[
          "b",
          "2 rows, equal as PostgreSQL compares the key (char(n) ignores trailing spaces, citext case)",
        ]]]],
        what,
      );
    }
    assert.deepEqual(await counts(env), [0, 0]);
  }, { tables: false });
});

Deno.test("diagnostics name the cause and a safe fix: a cut payload, an impossible date, a NULL created_at, what a policy did", async (t) => {
  await withTarget(async (env) => {
    const cut = JSON.stringify({ name: "Heat Days", album: { name: "Pool" } }).slice(0, 18);
    writeSqlite(
      env.sqlitePath,
      [track("good"), track("cut", { raw_json: cut })],
      [snapshot("good", { snapshot_date: "2024-02-30" }), snapshot("ghost")],
    );
    const db = new DatabaseSync(env.sqlitePath);
    db.exec("UPDATE tracks SET created_at = NULL WHERE track_id = 'good'");
    db.close();

    await t.step("each problem says where and why; each fix is safe and exact", async () => {
      const reject = `${env.dir}/rejects.jsonl`;
      const result = await runCli([...env.flags, "--reject-file", reject]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr,
        /tracks cut column raw_json: "\{\\"name\\":\\"Heat Days" \(ends early: the text stops after 18 characters, inside a string \(cut off\?\)\)/,
      );
      assert.match(result.stderr, /"2024-02-30" \(February 2024 has 29 days\)/);
      assert.match(
        result.stderr,
        /UPDATE snapshots SET snapshot_date = 'YYYY-MM-DD' WHERE track_id = '…' AND snapshot_date = '…' AND time_range = '…'/,
      );
      assert.doesNotMatch(result.stderr, /2024-01-31/, "no unrelated date");
      assert.match(
        result.stderr,
        /fix: fill them in SQLite: UPDATE tracks SET created_at = CURRENT_TIMESTAMP WHERE created_at IS NULL \(deleting the rows instead also loses/,
      );
      assert.doesNotMatch(result.stderr, /or delete the row/);
      const lines = (await Deno.readTextFile(reject)).trim().split("\n").map((l) => JSON.parse(l));
      const json = lines.find((l) => l.kind === "invalid-json");
      assert.equal(json.value, cut, "the whole value, quoted once");
      const date = lines.find((l) => l.kind === "invalid-date");
      assert.deepEqual([date.value, date.detail], ["2024-02-30", "February 2024 has 29 days"]);
    });
    await t.step(
      "after the policies, their groups say what was done, not to rerun with them",
      async () => {
        const db = new DatabaseSync(env.sqlitePath);
        db.exec(`UPDATE snapshots SET snapshot_date = '2024-02-29' WHERE track_id = 'good';
        UPDATE tracks SET created_at = CURRENT_TIMESTAMP`);
        db.close();
        const reject = `${env.dir}/policies.csv`;
        const result = await runCli([
          ...env.flags,
          "--invalid-json=null",
          "--orphans=skip",
          "--reject-file",
          reject,
        ]);
        assert.equal(result.code, 0, result.stderr);
        const policies = result.stdout.slice(result.stdout.indexOf("Changed by policy:"));
        assert.match(policies, /fix: stored as SQL NULL \(--invalid-json=null\)/);
        assert.match(policies, /fix: left out \(--orphans=skip\)/);
        assert.doesNotMatch(policies, /rerun with --/);
        const rows = (await Deno.readTextFile(reject)).trim().split("\n");
        assert.ok(
          rows.some((r) => r.startsWith("skipped,snapshots,ghost/2024-03-01/short_term,ghost,")),
          rows.join("\n"),
        );
        assert.ok(
          rows.some((r) => r.startsWith("stored-null,tracks,cut,cut,,,invalid-json,")),
          rows.join("\n"),
        );
      },
    );
  }, {});
});
