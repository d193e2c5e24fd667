// Keeps README honest. Each block between
//   <!-- output of: COMMAND -->  and  <!-- end of output -->
// is what COMMAND prints now, from a real run; each block between
//   <!-- generated: NAME -->  and  <!-- end of generated -->
// is made from the code's own declarations: `flags`, the table of flags and
// variables (src/options.ts FLAGS, as --help prints them), `create-schema`,
// the statements --create-schema runs (src/tables.ts createTableDdl).
//
//   deno task readme           rewrites the blocks
//   deno task readme --check   fails when a block differs from a fresh one
//                              (timings, ports and test counts aside)
//
// `deno task test` runs on an embedded server and is abridged to the lines
// that say which server and the result. The `deno task migrate …` blocks run in README order against one
// "app database": an embedded PostgreSQL with the tutorial's tables, the
// sample SQLite file `deno task sample` makes, and a .env naming both, in a
// folder shown as the user's (USER_FOLDER).
import postgres from "postgres";
import { generate } from "./generate.ts";
import { createTableDdl, TABLES } from "../src/tables.ts";
import { FLAGS, flagUsage, LIBPQ_VARIABLES } from "../src/options.ts";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./embedded_pg.ts";
import { MIGRATE_PERMISSIONS } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const README = `${ROOT}README.md`;
const BLOCK = /<!-- output of: (.+?) -->\n+(?:```text\n([\s\S]*?)```\n+)?<!-- end of output -->/g;
const GENERATED = /<!-- generated: (.+?) -->\n+([\s\S]*?)\n*<!-- end of generated -->/g;
/** Where README shows the temp folders the commands ran in: the user's folder. */
const USER_FOLDER = "/home/you/migrate.ts";

/** The app's target: the tutorial's tables, as --create-schema makes them. */
const APP_SCHEMA = TABLES.flatMap(createTableDdl).join(";\n");

/** What varies from run to run without the code changing. */
function normalize(text: string): string {
  return text
    .replace(/\b(\d+m)?\d+(\.\d+)?m?s\b/g, "<time>")
    .replace(/localhost:\d+/g, "localhost:<port>")
    .replace(/\b\d+ (passed|failed|ignored|filtered out)\b/g, "<n> $1")
    .replace(/\(\d+ steps?\)/g, "(<n> steps)");
}

/** Runs `deno ARGS` in `cwd` without `unset` in its environment; stdout and stderr as one text. */
async function output(args: string[], cwd: string, unset: string[] = []): Promise<string> {
  const env = Deno.env.toObject();
  for (const name of unset) delete env[name];
  // One stream, in the order the user sees it.
  const out = await new Deno.Command("sh", {
    args: ["-c", 'exec "$@" 2>&1', "sh", Deno.execPath(), ...args],
    cwd,
    // The user's folder is `cwd`, as when they run the command there.
    env: { ...env, NO_COLOR: "1", INIT_CWD: cwd },
    clearEnv: true,
  }).output();
  return new TextDecoder().decode(out.stdout).replace(/[ \t]+$/gm, "");
}

/** Deno test's lines about the server and the result; the per-test lines are left out. */
function abridgeTests(text: string): string {
  const lines = text.trimEnd().split("\n");
  const kept = lines.filter((l) => l.startsWith("tests: ") || /^(ok|FAILED) \| /.test(l));
  const first = lines.findIndex((l) => / \.\.\. (ok|FAILED|ignored)/.test(l));
  if (first >= 0) kept.splice(kept.length - 1, 0, lines[first], "…");
  return kept.join("\n");
}

class AppDatabase {
  private constructor(readonly dir: string, readonly pg: EmbeddedPostgres) {}

  static async start(): Promise<AppDatabase> {
    const pg = await startEmbeddedPostgres();
    const dir = await Deno.makeTempDir({ prefix: "mtm_readme_" });
    try {
      const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe("CREATE ROLE app LOGIN PASSWORD 'secret'");
        await admin.unsafe("CREATE DATABASE music_time_machine_pg OWNER app");
      } finally {
        await admin.end();
      }
      const url = pg.url("app", "secret", "music_time_machine_pg");
      const app = postgres(url, { max: 1, onnotice: () => {} });
      await app.unsafe(APP_SCHEMA).finally(() => app.end());
      generate("small", `${dir}/music_time_machine.db`);
      await Deno.writeTextFile(
        `${dir}/.env`,
        `SQLITE_PATH=music_time_machine.db\nDATABASE_URL=${url}\n`,
      );
      return new AppDatabase(dir, pg);
    } catch (error) {
      await pg.stop();
      await Deno.remove(dir, { recursive: true });
      throw error;
    }
  }

  async stop(): Promise<void> {
    await this.pg.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Variables of the user's own setup that would change what the commands do. */
const USER_SETUP = ["DATABASE_URL", "SQLITE_PATH", "TEST_DATABASE_URL", "PGAPPNAME"];

async function run(command: string, app: () => Promise<AppDatabase>): Promise<string> {
  if (command === "deno task demo") {
    return await output(["run", "--allow-all", "tools/demo.ts"], ROOT, USER_SETUP);
  }
  if (command === "deno task test") {
    Deno.env.set("TEST_EMBEDDED_POSTGRES", "1");
    try {
      return abridgeTests(await output(["run", "--allow-all", "tools/test.ts"], ROOT, USER_SETUP));
    } finally {
      Deno.env.delete("TEST_EMBEDDED_POSTGRES");
    }
  }
  const migrate = /^deno task migrate\b(.*)$/.exec(command);
  if (migrate) {
    const args = migrate[1].trim().split(/\s+/).filter(Boolean);
    const db = await app();
    const text = await output(
      ["run", ...MIGRATE_PERMISSIONS, `${ROOT}migrate.ts`, ...args],
      db.dir,
      USER_SETUP,
    );
    return text.replaceAll(db.dir, USER_FOLDER);
  }
  throw new Error(`README asks for the output of ${command}; tools/readme.ts cannot run it`);
}

/** A markdown table laid out as deno fmt lays it out. */
function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const code = (text: string) => `\`${text.replaceAll("|", "\\|")}\``;

/** The blocks made from the code's declarations. */
function generated(name: string): string {
  if (name === "flags") {
    const rows = FLAGS.map((flag) => [
      code(flagUsage(flag)),
      flag.env ? code(flag.env) : "",
      flag.kind === "boolean"
        ? "off"
        : flag.choices
        ? code(flag.choices[0])
        : flag.default !== undefined
        ? code(String(flag.default))
        : "",
      flag.help.replaceAll("|", "\\|"),
    ]);
    const variables = LIBPQ_VARIABLES.map((v) => ["", code(v.name), "", v.help]);
    return markdownTable(["flag", "variable", "default", "what it does"], [...rows, ...variables]);
  }
  if (name === "create-schema") {
    return "```sql\n" + TABLES.flatMap(createTableDdl).map((ddl) => `${ddl};`).join("\n") + "\n```";
  }
  throw new Error(`README asks for a generated block ${name}; tools/readme.ts cannot make it`);
}

/** Table cells compared as deno fmt may pad them. */
const normalizeTable = (text: string) =>
  text.trim().replace(/ {2,}/g, " ").replace(/-{3,}/g, "---").replace(/ \|/g, "|");

async function main(): Promise<number> {
  const check = Deno.args.includes("--check");
  const original = await Deno.readTextFile(README);
  let stale = 0;
  const readme = original.replace(GENERATED, (_, name: string, old: string) => {
    const now = generated(name);
    if (normalizeTable(old) !== normalizeTable(now)) {
      stale++;
      if (check) {
        console.error(`README: the generated block ${name} is not what the code declares now`);
      }
    }
    return `<!-- generated: ${name} -->\n\n${now}\n\n<!-- end of generated -->`;
  });
  let db: AppDatabase | undefined;
  const app = async () => db ??= await AppDatabase.start();
  const fresh = new Map<number, string>();
  try {
    for (const match of readme.matchAll(BLOCK)) {
      if (interrupted) throw new Error("interrupted");
      const text = (await run(match[1], app)).trimEnd();
      fresh.set(match.index, `$ ${match[1]}\n${text}\n`);
    }
  } finally {
    await db?.stop();
  }
  const updated = readme.replace(BLOCK, (_, command: string, old = "", index: number) => {
    const now = fresh.get(index)!;
    if (normalize(old) !== normalize(now)) {
      stale++;
      if (check) {
        console.error(`README: the output of \`${command}\` is not what it prints now:`);
        const [a, b] = [normalize(old).split("\n"), normalize(now).split("\n")];
        for (let i = 0; i < Math.max(a.length, b.length); i++) {
          if (a[i] !== b[i]) console.error(`  README: ${a[i] ?? ""}\n  now:    ${b[i] ?? ""}`);
        }
      }
    }
    // Laid out as deno fmt lays it out.
    return `<!-- output of: ${command} -->\n\n\`\`\`text\n${now}\`\`\`\n\n<!-- end of output -->`;
  });
  if (check) {
    if (stale > 0) console.error("fix: deno task readme");
    else {console.log(
        `README: ${fresh.size} output samples and the generated blocks match the current code`,
      );}
    return stale > 0 ? 1 : 0;
  }
  await Deno.writeTextFile(README, updated);
  console.log(`README: ${fresh.size} output samples regenerated (${stale} had changed)`);
  return 0;
}

let interrupted = false;

if (import.meta.main) {
  // Ctrl-C reaches the command running now from the terminal; we stop after
  // it, so that the app database's server is stopped and deleted.
  Deno.addSignalListener("SIGINT", () => interrupted = true);
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(interrupted ? 130 : 1);
  }
}
