// Verification: the target proven equal to the source before COMMIT, the
// digests and JSONB canonical form checked against PostgreSQL itself, and
// --verify-only.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import { random } from "../tools/generate.ts";
import { hashTextExtended, jsonbText, migrate, verify } from "../migrate.ts";
import {
  bulkRows,
  counts,
  incompressible,
  rejectsWith,
  runCli,
  snapshot,
  targetRows,
  TEST_DATABASE_URL,
  track,
  TRICKY_TEXT,
  withTarget,
  writeSqlite,
} from "./support.ts";

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
        [
          "tracks",
          "b",
          `values differ: raw_json: …2-02"}, "explicit": false} in SQLite, …2-02"}, "explicit": true} in PostgreSQL`,
        ],
        ["tracks", "c", "missing in PostgreSQL"],
        ["tracks", "zz", "only in PostgreSQL"],
        [
          "snapshots",
          "a/2024-03-01/short_term",
          "values differ: rank: 1 in SQLite, 2 in PostgreSQL",
        ],
      ],
    );
    assert.deepEqual(await targetRows(env), before, "verify-only writes nothing");
    const cli = await runCli([...env.flags, "--verify-only"]);
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /tracks zz: only in PostgreSQL/);
    assert.match(cli.stdout, /values differ: rank: 1 in SQLite, 2 in PostgreSQL/);
    assert.match(cli.stdout, /Verification failed/);
    // Nothing ran that a trigger could have changed: the fix is a run.
    assert.match(cli.stdout, /run the migration to make PostgreSQL match SQLite/);
    assert.doesNotMatch(cli.stdout, /a trigger or rule/);
  });
});

Deno.test("a target trigger that changes rows on the way in makes verification fail and roll back", async () => {
  await withTarget(async (env) => {
    await env.sql.unsafe(`
      CREATE FUNCTION ${env.schema}.shout() RETURNS trigger LANGUAGE plpgsql
        AS 'BEGIN NEW.name := upper(NEW.name); RETURN NEW; END';
      CREATE TRIGGER shout BEFORE INSERT OR UPDATE ON ${env.schema}.tracks
        FOR EACH ROW EXECUTE FUNCTION ${env.schema}.shout()`);
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    const error = await rejectsWith(migrate(env.options), "verification");
    assert.deepEqual(error.problems.map((g) => [g.kind, g.examples.map((p) => p.key)]), [
      ["content-mismatch", ["a", "b"]],
    ]);
    assert.deepEqual(await counts(env), [0, 0]);
    // The CLI prints the rolled-back run's report: it must not say committed,
    // nor list the mismatches twice.
    const cli = await runCli(env.flags);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /Rolled back: PostgreSQL is unchanged/);
    assert.doesNotMatch(cli.stderr + cli.stdout, /Migration committed/);
    assert.equal(cli.stderr.match(/row in PostgreSQL differs from its source/g)?.length, 1);
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("a trigger on snapshots that changes tracks makes verification fail, though tracks were written first", async () => {
  await withTarget(async (env) => {
    // The first run verifies tracks while it reads snapshots, when nothing can
    // write tracks any more: here something can, so that must wait.
    await env.sql.unsafe(`
      CREATE FUNCTION ${env.schema}.seen() RETURNS trigger LANGUAGE plpgsql
        AS 'BEGIN UPDATE ${env.schema}.tracks SET name = name || ''!'' WHERE track_id = NEW.track_id;
            RETURN NEW; END';
      CREATE TRIGGER seen AFTER INSERT ON ${env.schema}.snapshots
        FOR EACH ROW WHEN (NEW.track_id = 'bulk000099') EXECUTE FUNCTION ${env.schema}.seen()`);
    // More snapshot text than is made ahead (16 MiB), so that there is
    // something to read while tracks could be verified.
    const [tracks, short] = bulkRows(100, 84);
    const snapshots = short.map((s, i) => ({
      ...s,
      time_range: String(s.time_range) + incompressible(2600, i + 1),
    }));
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const error = await rejectsWith(migrate(env.options), "verification");
    assert.deepEqual(error.problems.map((g) => g.kind), ["content-mismatch"]);
    // The last track's snapshots are read last, after tracks could have been verified.
    assert.deepEqual(error.problems[0].examples.map((p) => p.key), ["bulk000099"]);
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("a rerun whose write fires a trigger that changes an unchanged row fails verification and rolls back", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, ["a", "b", "c", "d"].map((id) => track(id)), [snapshot("a")]);
    await migrate(env.options);
    // Adding a snapshot of "a" fires this, which renames "d": a row no
    // comparison of the rerun looked at, since its bucket agreed.
    await env.sql.unsafe(`
      CREATE FUNCTION ${env.schema}.rename() RETURNS trigger LANGUAGE plpgsql
        AS 'BEGIN UPDATE ${env.schema}.tracks SET name = ''renamed'' WHERE track_id = ''d'';
            RETURN NEW; END';
      CREATE TRIGGER rename AFTER INSERT ON ${env.schema}.snapshots
        FOR EACH ROW EXECUTE FUNCTION ${env.schema}.rename()`);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`INSERT INTO snapshots VALUES ('a', '2024-02-02', 'short_term', 2)`);
    db.close();
    const error = await rejectsWith(migrate(env.options), "verification");
    assert.deepEqual(error.problems.map((g) => [g.kind, g.examples.map((p) => p.key)]), [
      ["content-mismatch", ["d"]],
    ]);
    assert.deepEqual(await counts(env), [4, 1]);
  });
});

Deno.test("a rerun whose insert a rule echoes into tracks fails verification and rolls back", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    await migrate(env.options);
    // A rule, like a trigger, writes a row no statement of the rerun names:
    // the rerun must count the table, not add up what its statements said.
    await env.sql.unsafe(`
      CREATE RULE ghost AS ON INSERT TO ${env.schema}.snapshots
        DO ALSO INSERT INTO ${env.schema}.tracks (track_id, name, artist_name)
          VALUES ('ghost of ' || NEW.track_id, 'ghost', 'ghost')`);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`INSERT INTO snapshots VALUES ('b', '2024-02-02', 'short_term', 2)`);
    db.close();
    const error = await rejectsWith(migrate(env.options), "verification");
    assert.deepEqual(error.problems.map((g) => [g.kind, g.examples.map((p) => p.key)]), [
      ["content-mismatch", ["ghost of b"]],
    ]);
    assert.deepEqual(await counts(env), [2, 1]);
  });
});

// The digests compare a canonical text of each row computed twice: by
// JavaScript from SQLite and by PostgreSQL from the stored row. These tests
// hold the JavaScript side to PostgreSQL's own output, on many inputs.

// ------------------------------------------------------------------ edge cases

const deep = (n: number, open: string, close: string, inner: string) =>
  open.repeat(n) + inner + close.repeat(n);

const EDGE: string[] = [
  // literals and top-level scalars
  "true",
  "false",
  "null",
  '"x"',
  '""',
  "1",
  " \t\r\n null \n",
  "[true,false,null]",
  // numbers: integers
  "0",
  "-0",
  "7",
  "-7",
  "12345678901234567890",
  "-12345678901234567890",
  "123456789012345678901234567890123456789012345678901234567890",
  // numbers: fractions
  "1.50",
  "1.0000000000000000001",
  "-0.0",
  "-0.000",
  "0.0",
  "-0.001",
  "0.1",
  "3.14159265358979323846264338327950288419716939937510",
  // numbers: exponents
  "1e3",
  "1E3",
  "1e+3",
  "1E+2",
  "1e-3",
  "1.5e-3",
  "12.3e1",
  "12.3e2",
  "12.3e-1",
  "12.34e1",
  "123e-1",
  "100e-2",
  "0.1e1",
  "1e0",
  "1e+0",
  "1e-0",
  "1.50e0",
  "1e007",
  "1e-007",
  "0e10",
  "0e-10",
  "0E+0",
  "-0e0",
  "-0e-3",
  "-0.0e5",
  "0.000e2",
  "0.000e-2",
  "0.0e-2",
  "0.00e1",
  "-1.0e-5",
  "-1.23E+20",
  "9.999e-1",
  "1e-300",
  "1e300",
  "-1e300",
  "1.7976931348623157e308",
  "5e-324",
  "4.9406564584124654e-324",
  "1e1000",
  "1e-1000",
  "1e131071",
  "1e-16383",
  "9.99e16380",
  "0e200000",
  "0.1e131072",
  "123456789.123456789e-30",
  "123456789.123456789e30",
  "[1e2, 1.0e2, 10e1, 100, 100.0, 1000e-1]",
  '{"n": -0, "m": -0.0, "k": -0e1}',
  // strings and escapes
  '"\\""',
  '"\\\\"',
  '"\\/"',
  '"a/b"',
  '"\\b\\f\\n\\r\\t"',
  '"\\u0001\\u0002\\u0007\\u000b\\u000e\\u001f"',
  '"\\u001F\\u001f\\u001A"',
  '"\\u0008\\u000C\\u000a\\u000D\\u0009"',
  '"\\u0020\\u0021\\u0022\\u005c\\u005C\\u002f"',
  '"\\u007f\\u0080\\u00ff\\u0100"',
  '"\u007f"',
  '"\\u00e9\\u00E9é"',
  '"\\u4e2d\\u6587 中文"',
  '"\\ud83d\\ude00 😀 \\uD83D\\uDE00"',
  '"\\ud800\\udc00\\udbff\\udfff"',
  '"\\ue000\\uffff\\ufffe\\ufffd"',
  '"\uffff\ue000"',
  '"\\u2028\\u2029"',
  '"tab\there"', // raw escape sequence "\t" in TS is a real tab -> invalid JSON; replaced below
  '"mixed \\"quoted\\" and \\\\backslash\\\\ and \\/slash"',
  '"' + "x".repeat(5000) + '"',
  '"' + "\\n".repeat(300) + '"',
  // objects: ordering
  '{"b":1,"a":2}',
  '{"aa":1,"b":2,"a":3,"":4}',
  '{"":1}',
  '{"ab":1,"aa":2,"b":3,"ba":4,"a":5,"abc":6}',
  '{"B":1,"a":2,"A":3,"b":4,"_":5,"0":6,"~":7}',
  '{"é":1,"z":2,"ab":3,"\uffff":4,"😀":5,"abc":6,"abcd":7,"e":8}',
  '{"\\u00e9":1,"é":2}',
  '{"\\u0061":1,"a":2}',
  '{"a":1,"\\u0061":2}',
  '{"\ue000":1,"😀":2,"\uffff":3,"\ud800\udc00":4}',
  '{"\ue000\ue000":1,"😀":2}',
  '{"a😀":1,"a\ue000b":2,"aé":3,"aéb":4}',
  '{"ä":1,"ö":2,"ü":3,"Ä":4,"ß":5,"ÿ":6,"ā":7}',
  '{"\\n":1,"\\t":2,"\\"":3,"\\\\":4,"\\/":5,"/":6}',
  '{"key with space":1,"key":2,"KEY":3}',
  '{"10":1,"9":2,"1":3,"01":4,"-1":5}',
  // objects: duplicates at several depths
  '{"a":1,"a":2}',
  '{"a":1,"b":2,"a":3}',
  '{"a":1,"a":2,"a":3,"a":4}',
  '{"a":{"x":1,"x":2},"a":{"y":1,"y":[1,{"z":1,"z":2}]}}',
  '[{"a":1,"a":2},{"b":1,"b":{"c":1,"c":2,"c":3}}]',
  '{"a":1,"b":2,"b":3,"a":4,"c":5,"c":6,"":7,"":8}',
  '{"x":{"x":{"x":{"x":1,"x":2},"x":3},"x":4},"x":{"x":5}}',
  // containers and whitespace
  "[]",
  "{}",
  "[[]]",
  "[{}]",
  '{"a":[],"b":{}}',
  " [ ] ",
  " { } ",
  "[ 1 , 2 , 3 ]",
  '{ "a" : 1 , "b" : [ 1 , 2 ] }',
  '\n{\n\t"a"\n:\n1\r\n,\t"b":\t[\r1,\n2 ]\n}\n',
  '{"a":1,"b":[1,2]}',
  "[1,[2,[3,[4,[5,[]]]]]]",
  deep(100, "[", "]", "1"),
  deep(1000, "[", "]", ""),
  deep(1000, '{"a":', "}", "null"),
  deep(300, '[{"k":', "}]", '{"z":1,"z":2}'),
];

// big objects: member stack growth, reordering, duplicates far apart
EDGE.push(
  "{" +
    Array.from({ length: 2000 }, (_, k) => `"k${1999 - k}":${k}`).join(",") +
    ',"k5":"last","k1999":"again"}',
  "{" +
    Array.from(
      { length: 600 },
      (_, k) => `"\\u00e9${"x".repeat(k % 7)}\\u0041${k % 50}":[${k},{"b":1,"a":2}]`,
    ).join(
      ",",
    ) +
    "}",
  "[" +
    Array.from({ length: 300 }, (_, k) => `"\\n${"é".repeat(k)}\\ud83d\\ude00"`)
      .join(",") +
    "]",
);

// '"tab\there"' above contains a raw TAB (invalid JSON); use the escaped form instead.
EDGE[EDGE.indexOf('"tab\there"')] = '"tab\\there"';

/** Inputs PostgreSQL rejects; jsonbText must throw for them too. */
const REJECTED = [
  '"\\u0000"',
  '"\\ud800"',
  '"\\udc00"',
  '"\\ud800x"',
  '"\\ud800\\u0041"',
  "1e131072",
  "1e-16384",
  "1.5e-16383",
  "0e-16384",
  "01",
  '"tab\there"',
  "0." + "1".repeat(16384),
  "1".repeat(131073),
];

// ------------------------------------------------------------------ random documents

function randomDocs(seed: number, count: number): string[] {
  const rnd = random(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const hex4 = (cp: number) => {
    const h = cp.toString(16).padStart(4, "0");
    return rnd() < 0.5 ? h : h.toUpperCase();
  };
  const WS = ["", "", "", " ", "  ", "\n", "\t", "\r\n  ", " \n\t "];
  const ws = () => pick(WS);
  const RAW = [
    "a",
    "b",
    "Z",
    " ",
    "0",
    "é",
    "ß",
    "中",
    "😀",
    "\uffff",
    "\ue000",
    "\u007f",
    "\u0080",
    "~",
    "/",
    "'",
  ];
  const ESC = ['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"];

  function strBody(): string {
    let out = "";
    const n = int(12);
    for (let k = 0; k < n; k++) {
      const r = rnd();
      if (r < 0.45) out += pick(RAW);
      else if (r < 0.6) out += pick(ESC);
      else if (r < 0.7) out += "\\u" + hex4(1 + int(0x1f)); // control chars, never \u0000
      else if (r < 0.85) {
        // random BMP non-surrogate code point, escaped
        let cp = 1 + int(0xffff);
        if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
        out += "\\u" + hex4(cp);
      } else if (r < 0.92) {
        // astral code point as escaped surrogate pair
        const cp = 0x10000 + int(0x100000);
        const v = cp - 0x10000;
        out += "\\u" + hex4(0xd800 + (v >> 10)) + "\\u" +
          hex4(0xdc00 + (v & 0x3ff));
      } else {
        out += String.fromCodePoint(0x10000 + int(0x100000)); // raw astral
      }
    }
    return out;
  }

  // Small key pool -> many duplicates and near-collisions (length vs bytes).
  const KEYS = [
    "",
    "a",
    "b",
    "A",
    "aa",
    "ab",
    "ba",
    "abc",
    "é",
    "\\u00e9",
    "\\u0061",
    "z",
    "😀",
    "\\ud83d\\ude00",
    "\ue000",
    "\uffff",
    "ä",
    "id",
    "name",
    "type",
    "uri",
    "href",
    "\\n",
    '\\"',
    "a b",
    "0",
    "10",
    "9",
  ];
  const key = () => (rnd() < 0.8 ? pick(KEYS) : strBody());

  function num(): string {
    let out = rnd() < 0.3 ? "-" : "";
    if (rnd() < 0.25) out += "0";
    else {
      out += String(1 + int(9));
      const n = int(rnd() < 0.1 ? 30 : 6);
      for (let k = 0; k < n; k++) out += String(int(10));
    }
    if (rnd() < 0.5) {
      out += ".";
      const n = 1 + int(rnd() < 0.1 ? 30 : 5);
      const zeros = rnd() < 0.2;
      for (let k = 0; k < n; k++) out += zeros ? "0" : String(int(10));
    }
    if (rnd() < 0.5) {
      out += pick(["e", "E"]) + pick(["", "+", "-"]);
      const big = rnd() < 0.05;
      let e = String(big ? int(400) : int(25));
      if (rnd() < 0.1) e = "0".repeat(1 + int(3)) + e;
      out += e;
    }
    return out;
  }

  function val(depth: number): string {
    const r = rnd();
    const scalarBias = depth > 3 ? 0.6 : 0.3;
    if (r < scalarBias) {
      const s = rnd();
      if (s < 0.4) return num();
      if (s < 0.8) return '"' + strBody() + '"';
      return pick(["true", "false", "null"]);
    }
    if (r < scalarBias + (1 - scalarBias) / 2) {
      const n = int(depth > 4 ? 3 : 7);
      if (n === 0) return "[" + ws() + "]";
      const items: string[] = [];
      for (let k = 0; k < n; k++) items.push(ws() + val(depth + 1) + ws());
      return "[" + items.join(",") + "]";
    }
    const n = int(depth > 4 ? 3 : 9);
    if (n === 0) return "{" + ws() + "}";
    const items: string[] = [];
    for (let k = 0; k < n; k++) {
      items.push(
        ws() + '"' + key() + '"' + ws() + ":" + ws() + val(depth + 1) + ws(),
      );
    }
    // occasionally repeat an earlier member later (exact duplicate key text)
    if (rnd() < 0.3) {
      items.push(
        ws() + items[int(items.length)].trim().replace(/:.*$/s, ":") + num(),
      );
    }
    return "{" + items.join(",") + "}";
  }

  const docs: string[] = [];
  for (let d = 0; d < count; d++) docs.push(ws() + val(0) + ws());
  return docs;
}

Deno.test("jsonbText() prints exactly what PostgreSQL's jsonb_out prints, and refuses what JSONB refuses", async () => {
  const sql = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const cases = [...EDGE, ...randomDocs(20261125, 3000)];
    const bad: string[] = [];
    for (let b = 0; b < cases.length; b += 500) {
      const batch = cases.slice(b, b + 500);
      const rows = await sql.unsafe(
        `SELECT x::jsonb::text AS j FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n`,
        [batch],
      );
      batch.forEach((x, k) => {
        if (jsonbText(x) !== rows[k].j) {
          bad.push(`${JSON.stringify(x).slice(0, 200)} → ${rows[k].j}`);
        }
      });
    }
    assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${cases.length} differ`);
    for (const x of REJECTED) {
      await assert.rejects(sql.unsafe(`SELECT $1::text::jsonb`, [x]));
      assert.throws(() => jsonbText(x), x);
    }
  } finally {
    await sql.end();
  }
});

Deno.test("hashTextExtended() equals PostgreSQL's hashtextextended(text, 0) for every length and script", async () => {
  const sql = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const rnd = random(7);
    const alphabet = ["a", "Z", "0", " ", ":", "é", "中", "😀", "\n", "N"];
    const texts = Array.from({ length: 600 }, (_, n) => {
      let text = "";
      for (let k = 0; k < n % 80; k++) text += alphabet[Math.floor(rnd() * alphabet.length)];
      return text;
    });
    texts.push("x".repeat(5000), "");
    const rows = await sql.unsafe(
      `SELECT hashtextextended(x, 0)::text AS h FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n)
       ORDER BY n`,
      [texts],
    );
    texts.forEach((text, k) => assert.equal(String(hashTextExtended(text)), rows[k].h, text));
  } finally {
    await sql.end();
  }
});

Deno.test("digests agree with PostgreSQL for every kind of column: no row needs a second look", async () => {
  await withTarget(async (env) => {
    await env.sql.unsafe(`
      ALTER TABLE ${env.schema}.tracks ALTER COLUMN track_id TYPE char(12),
        ALTER COLUMN created_at TYPE timestamp;
      ALTER TABLE ${env.schema}.tracks ADD COLUMN liked BOOLEAN, ADD COLUMN synced TIMESTAMPTZ,
        ADD COLUMN plays BIGINT, ADD COLUMN extra JSON`);
    const tracks = [
      track("a", { raw_json: '{"b": [1e2, -0.0, 1.50], "a": "\\u00e9\\n", "a": null}' }),
      track("b", { name: TRICKY_TEXT, album_name: null, raw_json: null }),
      track("c ", { raw_json: '"just a string"' }),
    ];
    writeSqlite(env.sqlitePath, tracks, [snapshot("a"), snapshot("b", { rank: 2 ** 31 - 1 })]);
    const db = new DatabaseSync(env.sqlitePath);
    db.exec(`ALTER TABLE tracks ADD COLUMN liked INTEGER; ALTER TABLE tracks ADD COLUMN synced TEXT;
      ALTER TABLE tracks ADD COLUMN plays INTEGER; ALTER TABLE tracks ADD COLUMN extra TEXT;
      UPDATE tracks SET liked = 1, synced = '2024-01-31T23:30:00.250+02:00', plays = 9007199254740993,
        extra = '{"z": 1,  "a": 2}', created_at = '2024-02-29 12:00:00' WHERE track_id = 'a';
      UPDATE tracks SET liked = 0, synced = '2024-01-31', created_at = '2024-02-29T12:00Z'
        WHERE track_id = 'b';
      UPDATE tracks SET synced = '2024-06-01 00:00:00.000001-0330' WHERE track_id = 'c '`);
    db.close();
    const report = await migrate(env.options);
    assert.ok(report.ok);
    assert.equal(report.verification.rechecked, 0, "every digest matched on the first look");
    const rerun = await migrate(env.options);
    assert.equal(rerun.verification.rechecked, 0);
    assert.deepEqual(rerun.tables.map((t) => t.unchanged), [3, 2]);
  });
});

Deno.test("raw_json stored with other digits but equal as JSONB is compared again by value and passes", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a", { raw_json: '{"n": 1.0}' })], []);
    await migrate(env.options);
    await env.sql.unsafe(`UPDATE ${env.schema}.tracks SET raw_json = '{"n": 1.00}'`);
    const report = await verify(env.options);
    assert.ok(report.ok);
    assert.equal(report.verification.rechecked, 1);
  });
});

Deno.test("a target trigger that rewrites raw_json on the way in makes verification fail and roll back", async () => {
  await withTarget(async (env) => {
    await env.sql.unsafe(`
      CREATE FUNCTION ${env.schema}.tag() RETURNS trigger LANGUAGE plpgsql
        AS $$BEGIN NEW.raw_json := NEW.raw_json || '{"tagged": true}'; RETURN NEW; END$$;
      CREATE TRIGGER tag BEFORE INSERT OR UPDATE ON ${env.schema}.tracks
        FOR EACH ROW EXECUTE FUNCTION ${env.schema}.tag()`);
    writeSqlite(env.sqlitePath, [track("a"), track("b")], []);
    const error = await rejectsWith(migrate(env.options), "verification");
    assert.deepEqual(error.problems.map((g) => [g.kind, g.examples.map((p) => p.key)]), [
      ["content-mismatch", ["a", "b"]],
    ]);
    assert.equal(error.report?.verification.rechecked, 2, "both were compared by value too");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

// Kills: --verify-only that commits its transaction (mutation 17b2: the Rollback thrown for
// dry-run only). Nothing else in a verify-only run writes, except --create-schema.
Deno.test("--verify-only --create-schema creates nothing: the transaction is rolled back", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const schema = `${env.schema}_new`;
    try {
      const report = await verify({ ...env.options, schema, createSchema: true });
      assert.equal(report.ok, false, "SQLite's rows are missing in the empty tables");
      assert.equal(report.committed, false);
      const [{ exists }] = await env.sql`
        SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ${schema}) AS exists`;
      assert.equal(exists, false, "verify-only left the schema it created");
    } finally {
      await env.sql`DROP SCHEMA IF EXISTS ${env.sql(schema)} CASCADE`;
    }
  });
});

Deno.test("text the target's type takes as equal (citext ignores case) is compared as stored: a mismatch to --verify-only, written by a rerun", async () => {
  await withTarget(async (env) => {
    await env.sql.unsafe(`CREATE EXTENSION citext SCHEMA ${env.schema};
      ALTER TABLE ${env.schema}.tracks ALTER COLUMN name TYPE ${env.schema}.citext`);
    writeSqlite(env.sqlitePath, [track("a", { name: "Song A" }), track("b")], []);
    assert.ok((await migrate(env.options)).ok);
    await env.sql.unsafe(`UPDATE ${env.schema}.tracks SET name = 'SONG A' WHERE track_id = 'a'`);
    const verified = await verify(env.options);
    assert.equal(verified.ok, false);
    assert.deepEqual(
      verified.verification.mismatches.flatMap((g) => g.examples.map((p) => [p.key, p.value])),
      [["a", 'values differ: name: "Song A" in SQLite, "SONG A" in PostgreSQL']],
    );
    const rerun = await migrate(env.options);
    assert.ok(rerun.ok);
    assert.deepEqual(rerun.tables.map((t) => [t.table, t.updated]), [["tracks", 1], [
      "snapshots",
      0,
    ]]);
    const [{ name }] = await env.sql.unsafe(
      `SELECT name::text AS name FROM ${env.schema}.tracks WHERE track_id = 'a'`,
    );
    assert.equal(name, "Song A");
  });
});
