// `deno task compile`: builds dist/migrate with `deno compile`, and says in
// one line what is missing when it cannot. deno compile downloads Deno's
// runtime for the binary (denort) on first use; offline, it prints a raw
// error with a backtrace and leaves an empty dist/.
// The binary runs with the permissions `deno task migrate` grants.
import { MIGRATE_PERMISSIONS } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const OUTPUT = "dist/migrate";

/** Where deno compile fetches the runtime from: the URL in its own error message. */
const DOWNLOAD = /https:\/\/\S+\/denort-[\w.-]+\.zip/;

async function main(): Promise<number> {
  const dist = `${ROOT}dist`;
  const existed = await Deno.stat(dist).then(() => true, () => false);
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["compile", ...MIGRATE_PERMISSIONS, "--output", OUTPUT, "migrate.ts", ...Deno.args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stderr).replace(BACKTRACE, "");
  if (code === 0) {
    Deno.stderr.writeSync(stderr);
    console.log(`built ${dist}/migrate: run it as ./dist/migrate --help`);
    return 0;
  }
  // deno compile leaves the folder it made, empty.
  if (!existed) await Deno.remove(dist).catch(() => {});
  const explained = explainFailure(text);
  console.error(explained ?? text.trimEnd());
  return explained ? 2 : code;
}

const BACKTRACE = /\n+Stack backtrace:[\s\S]*$/;

/** What deno compile's failure means for the user, when it is the runtime's download. */
export function explainFailure(text: string): string | undefined {
  const url = DOWNLOAD.exec(text)?.[0];
  if (!url) return undefined;
  return `error: deno compile needs Deno's runtime for the binary (denort), which it downloads from ${url}, and that download failed (${
    lastCause(text.replace(BACKTRACE, ""))
  })\n` +
    `fix: run deno task compile once where that address is reachable (Deno keeps denort in its cache), ` +
    `or download that zip elsewhere, unzip it, and run DENORT_BIN=/path/to/denort deno task compile; ` +
    `without a binary, deno task migrate does the same`;
}

/** The innermost cause in deno's error chain, e.g. "dns error". */
function lastCause(text: string): string {
  const causes = [...text.matchAll(/^\s+\d+: (.+)$/gm)].map((m) => m[1]);
  return causes.at(-1) ?? text.split("\n").find((l) => l.startsWith("error:")) ?? "no reason given";
}

if (import.meta.main) Deno.exit(await main());
