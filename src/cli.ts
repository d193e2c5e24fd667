/**
 * The command line: flags in, the report out, an exit code.
 *
 * @module
 */

import type { CancelKey, ConnectionInfo, ConnectionSettings, Options, Step } from "./types.ts";
import { describeConnection, describeSources, redact } from "./connection_settings.ts";
import {
  describeOrigin,
  type Dotenv,
  loadEnvironment,
  type OutputOptions,
  resolveOptions,
  USAGE,
  userFolder,
  VERSION,
} from "./options.ts";
import { EXIT_CODE } from "./errors.ts";
import { asMigrationError } from "./pg_errors.ts";
import { formatProblems, formatReport, progressPrinter } from "./report.ts";
import { migrate } from "./run.ts";
import { describeSettings } from "./session.ts";

/**
 * Runs the CLI with the given arguments and returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./migrate.ts";
 * Deno.exit(await main(["--dry-run"]));
 * ```
 */
export async function main(
  args: string[],
  onCancelKey?: (key: CancelKey) => void,
): Promise<number> {
  let output: OutputOptions = {
    help: false,
    version: false,
    quiet: false,
    verbose: false,
    // Known before the flags are parsed: their errors are JSON too.
    json: args.includes("--json"),
  };
  let connection: ConnectionSettings | undefined;
  let connected: ConnectionInfo | undefined;
  let rejectFile: string | undefined;
  let dotenv: Dotenv | undefined;
  try {
    // Paths the user types, and .env, mean the folder they ran the command from.
    const folder = userFolder();
    const loaded = loadEnvironment(folder);
    dotenv = loaded.dotenv;
    const resolved = resolveOptions(args, loaded.env, folder);
    output = resolved.output;
    connection = resolved.options.connection!;
    rejectFile = resolved.options.rejectFile;
    if (output.help) {
      console.log(USAGE);
      return 0;
    }
    if (output.version) {
      console.log(`migrate.ts ${VERSION}`);
      return 0;
    }
    const say = (line: string) => {
      if (!output.quiet && !output.json) console.log(line);
    };
    // Steps go to stderr under --json, so stdout stays one JSON object.
    // Lines about how it works inside are for --verbose.
    const step: Step = (line, detail) => {
      if (detail && !output.verbose) return;
      if (output.json) output.quiet || console.error(line);
      else say(line);
    };
    for (const warning of connection.warnings) console.error(warning);
    const options: Options = {
      ...resolved.options,
      onStep: step,
      onCancelKey,
      onSettings: output.verbose
        ? (settings) => {
          step("session settings for this run (SET LOCAL; what the server gave, and from where):");
          for (const line of describeSettings(settings)) step(line);
        }
        : undefined,
      onProgress: !output.quiet && Deno.stderr.isTerminal() ? progressPrinter() : undefined,
      onConnect: (info) => {
        connected = info;
        step(connectedLine(info));
      },
    };
    say(
      `Migrating ${options.sqlitePath} → ${
        describeConnection(connection)
      } (schema ${options.schema})${
        options.mode === "dry-run"
          ? " [dry run]"
          : options.mode === "verify-only"
          ? " [verify only]"
          : ""
      }`,
    );
    if (output.verbose) {
      const origin = (source: string) => describeOrigin(source, dotenv);
      step(`sqlite ${options.sqlitePath}  (${origin(resolved.settings.sqlite.source)})`);
      step("connection settings (value, and where it came from):");
      for (const line of describeSources(connection, origin)) step(line);
    }
    const report = await migrate(options);
    if (output.json) {
      console.log(redact(
        JSON.stringify({ ...report, connection: connectionJson(connection, connected) }),
        connection,
      ));
    } else say(formatReport(report));
    return report.ok ? 0 : EXIT_CODE.verification;
  } catch (error) {
    const failure = asMigrationError(error, connection);
    if (output.json) {
      console.log(redact(
        JSON.stringify({
          ok: false,
          error: {
            kind: failure.kind,
            message: failure.message,
            hint: failure.hint,
            problems: failure.problems,
          },
          report: failure.report,
          connection: connection && connectionJson(connection, connected),
        }),
        connection,
      ));
    }
    // A failed verification's report lists its mismatches, which are the
    // failure's problems: once.
    const lines = [
      `error: ${failure.message}`,
      ...(failure.report && !output.json
        ? [formatReport(failure.report)]
        : formatProblems(failure.problems)),
    ];
    if (failure.hint && failure.problems.length === 0) lines.push(`fix: ${failure.hint}`);
    if (failure.problems.length > 0 && rejectFile) {
      lines.push(`every problem row is listed in ${rejectFile}`);
    }
    console.error(redact(lines.join("\n"), connection));
    return failure.exitCode;
  }
}

/** The line after connecting: is it encrypted, and was the server verified? */
function connectedLine(info: ConnectionInfo): string {
  const tls = info.socket
    ? "Unix socket, not encrypted"
    : !info.encrypted
    ? "not encrypted"
    : info.verified === "nothing"
    ? "encrypted (TLS), server certificate not verified"
    : `encrypted (TLS), server ${info.verified} verified`;
  return `connected to ${info.target}: ${tls} (sslmode=${info.sslmode})`;
}

/** The connection as `--json` shows it: no password, each setting's source. */
function connectionJson(connection: ConnectionSettings, connected: ConnectionInfo | undefined) {
  return {
    target: describeConnection(connection),
    sslmode: connection.sslmode,
    encrypted: connected?.encrypted ?? null,
    verified: connected?.verified ?? null,
    sources: connection.sources,
  };
}
