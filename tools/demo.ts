// `deno task demo`: the whole tool on realistic data, with nothing to set up.
// Makes a sample SQLite database (unless SQLITE_PATH/--sqlite names one),
// starts an embedded PostgreSQL (unless DATABASE_URL names a server), runs
// migrate.ts into it, shows the tutorial's JSONB queries on the result, then
// stops the server and deletes every temp file, also on errors and Ctrl-C.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { generate, SIZES } from "./generate.ts";
import { startEmbeddedPostgres } from "./embedded_pg.ts";
import { MIGRATE_PERMISSIONS } from "./permissions.ts";

const USAGE = `deno task demo: migrate a sample Music Time Machine database into a real PostgreSQL

  --sqlite PATH   migrate this SQLite file (env SQLITE_PATH); default: a generated sample
  --year YYYY     the release year the first query looks for (default 2019)
  --keep          with DATABASE_URL: keep the demo schema instead of dropping it
  --help          this text
  any other option goes to migrate.ts (see deno task migrate --help), e.g.
  --ignore-columns snapshots.id or --dry-run

Without DATABASE_URL, an embedded PostgreSQL runs in a temp folder for the demo's
duration. With it, the demo migrates into a new schema mtm_demo_… there and drops it at
the end (unless --keep). .env is not read: the demo never touches your app's target.

  deno task demo
  SQLITE_PATH=~/app/music_time_machine.db deno task demo
  DATABASE_URL=postgresql://me@localhost/scratch deno task demo --keep`;

const MIGRATE_TS = new URL("../migrate.ts", import.meta.url).pathname;
const EMBEDDED_DATABASE = "music_time_machine_pg";

/** The tutorial's JSONB queries (section 4's check, grown into questions a user asks). */
const QUERIES = [
  {
    title: (year: string) => `Tracks released in ${year} (raw_json->'album'->>'release_date')`,
    sql: `SELECT name, artist_name, raw_json->'album'->>'release_date' AS release_date
FROM tracks
WHERE raw_json->'album'->>'release_date' LIKE $1 || '-%'
ORDER BY release_date, name`,
    params: (year: string) => [year],
  },
  {
    title: () => "Explicit tracks (raw_json->>'explicit')",
    sql: `SELECT count(*) FILTER (WHERE (raw_json->>'explicit')::boolean) AS explicit,
       count(*) AS tracks
FROM tracks`,
    params: () => [],
  },
  {
    title: () => "Top artists: days in the short-term top 10 (jsonb_array_elements)",
    sql: `SELECT artist->>'name' AS artist, count(*) AS days_in_top_10
FROM snapshots
JOIN tracks USING (track_id)
CROSS JOIN jsonb_array_elements(tracks.raw_json->'artists') AS artist
WHERE time_range = 'short_term' AND rank <= 10
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT 5`,
    params: () => [],
  },
];

const masked = (url: string) => url.replace(/:[^:@/]*@/, ":***@");

let interrupted = false;
let migration: Deno.ChildProcess | undefined;

class Interrupted extends Error {}

function checkInterrupted(): void {
  if (interrupted) throw new Interrupted();
}

function table(rows: Record<string, unknown>[]): string[] {
  if (rows.length === 0) return ["(no rows)"];
  const columns = Object.keys(rows[0]);
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? "")));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  return [line(columns), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)];
}

/** Runs migrate.ts as `deno task migrate` would; its output goes straight to ours. */
async function runMigration(cwd: string, args: string[]): Promise<number> {
  migration = new Deno.Command(Deno.execPath(), {
    args: ["run", ...MIGRATE_PERMISSIONS, MIGRATE_TS, ...args],
    cwd,
    // migrate.ts reads .env from the user's folder (INIT_CWD): the demo's is empty.
    env: { INIT_CWD: cwd },
  }).spawn();
  const status = await migration.status;
  migration = undefined;
  return status.code;
}

async function showQueries(url: string, schema: string, year: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { search_path: schema } });
  try {
    for (const q of QUERIES) {
      checkInterrupted();
      console.log(`\n-- ${q.title(year)}\n${q.sql.replaceAll("$1 || '-%'", `'${year}-%'`)};`);
      const rows = await sql.unsafe(q.sql, q.params(year));
      console.log(table([...rows]).join("\n"));
    }
  } finally {
    await sql.end();
  }
}

/** The demo's own options, and the migrate.ts options it passes on. */
const DEMO_OPTIONS = {
  sqlite: { type: "string" },
  year: { type: "string", default: "2019" },
  keep: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

/** Splits the arguments into the demo's own and the rest, which go to migrate.ts as given. */
export function splitDemoArgs(args: string[]): { own: string[]; migrate: string[] } {
  const own: string[] = [];
  const migrate: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([^=]+)/.exec(args[i])?.[1] as keyof typeof DEMO_OPTIONS | undefined;
    const spec = name && Object.hasOwn(DEMO_OPTIONS, name) ? DEMO_OPTIONS[name] : undefined;
    if (!spec) {
      migrate.push(args[i]);
      continue;
    }
    own.push(args[i]);
    if (spec.type === "string" && !args[i].includes("=") && i + 1 < args.length) {
      own.push(args[++i]);
    }
  }
  return { own, migrate };
}

async function main(): Promise<number> {
  const split = splitDemoArgs(Deno.args);
  const { values } = parseArgs({ args: split.own, options: DEMO_OPTIONS });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const dir = await Deno.makeTempDir({ prefix: "mtm_demo_" });
    cleanups.push(() => Deno.remove(dir, { recursive: true }));

    // 1. The SQLite source.
    let sqlite = values.sqlite ?? Deno.env.get("SQLITE_PATH");
    if (sqlite) {
      const given = sqlite;
      // A relative path means the folder the user ran deno task from.
      const path = resolve(Deno.env.get("INIT_CWD") || Deno.cwd(), given);
      sqlite = await Deno.realPath(path).catch(() => {
        throw new Error(`SQLite database not found: ${path}`);
      });
      console.log(`SQLite: ${sqlite} (given)`);
    } else {
      sqlite = "music_time_machine.db";
      generate("demo", `${dir}/${sqlite}`);
      const { tracks, snapshots } = SIZES.demo;
      console.log(
        `SQLite: generated ${sqlite} in a temp folder: ${tracks} tracks with Spotify-like ` +
          `raw_json, ${snapshots.toLocaleString("en-US")} snapshots (daily top 50s, 3 weeks)`,
      );
    }
    checkInterrupted();

    // 2. The PostgreSQL target.
    const given = Deno.env.get("DATABASE_URL");
    let url: string;
    let schema = "public";
    if (given) {
      url = given;
      schema = `mtm_demo_${crypto.randomUUID().slice(0, 8)}`;
      console.log(`PostgreSQL: ${masked(url)} (DATABASE_URL), in a new schema ${schema}`);
    } else {
      const pg = await startEmbeddedPostgres();
      cleanups.push(async () => {
        await pg.stop();
        console.log(`\nStopped the embedded PostgreSQL and deleted its temp folder.`);
      });
      const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} });
      await admin.unsafe(`CREATE DATABASE ${EMBEDDED_DATABASE}`).finally(() => admin.end());
      url = pg.url("postgres", new URL(pg.adminUrl).password, EMBEDDED_DATABASE);
      console.log(
        `PostgreSQL: started an embedded PostgreSQL ${pg.version} in a temp folder ` +
          `(no DATABASE_URL given)`,
      );
    }
    checkInterrupted();

    // 3. The migration, by the CLI a user runs.
    const args = [
      "--sqlite",
      sqlite,
      "--database-url",
      url,
      "--schema",
      schema,
      "--create-schema",
      ...split.migrate,
    ];
    console.log(
      `\n$ deno task migrate ${args.map((a) => a === url ? `'${masked(url)}'` : a).join(" ")}`,
    );
    if (given) {
      cleanups.push(async () => {
        if (values.keep) {
          console.log(`\nKept schema ${schema}; drop it with: DROP SCHEMA ${schema} CASCADE;`);
          return;
        }
        const sql = postgres(url, { max: 1, onnotice: () => {} });
        await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.finally(() => sql.end());
        console.log(`\nDropped schema ${schema}.`);
      });
    }
    const code = await runMigration(dir, args);
    checkInterrupted();
    if (code !== 0) return code;

    // 4. What JSONB gives: the tutorial's queries on the migrated data.
    console.log(`\nQueries on the migrated data (raw_json is JSONB now):`);
    await showQueries(url, schema, values.year);
    return 0;
  } catch (error) {
    if (error instanceof Interrupted || interrupted) {
      console.error("\ninterrupted");
      return 130;
    }
    console.error(`error: ${(error as Error).message}`);
    return 1;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((e) => console.error(`cleanup: ${(e as Error).message}`));
    }
  }
}

if (import.meta.main) {
  // Ctrl-C also reaches the migration from the terminal; we wait for it to
  // roll back and end, then clean up.
  const onSignal = (signal: Deno.Signal) => () => {
    interrupted = true;
    try {
      migration?.kill(signal);
    } catch {
      // already ended
    }
  };
  Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));
  const code = await main();
  if (code === 0) {
    console.log(
      `\nYour own data: SQLITE_PATH=path/to/music_time_machine.db deno task demo\n` +
        `Your own server (into a throwaway schema): DATABASE_URL=postgresql://user:pass@host/db deno task demo\n` +
        `The real migration: see "Use it on your app's database" in README.md (deno task migrate).`,
    );
  }
  Deno.exit(code);
}
