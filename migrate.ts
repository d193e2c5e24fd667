#!/usr/bin/env -S deno run --allow-read --allow-write --allow-env --allow-net --allow-sys
/**
 * Moves the Music Time Machine's data (`tracks`, `snapshots`) from SQLite to
 * PostgreSQL without changing its meaning: one transaction, every row
 * validated before it is sent, every migrated row proven equal to its source
 * before COMMIT.
 *
 * This module is what users run and import: the command line and the library
 * API. The implementation lives in `src/`, one module per stage of the
 * pipeline (docs/ARCHITECTURE.md is the map).
 *
 * @example Library use
 * ```ts
 * import { migrate } from "./migrate.ts";
 *
 * const report = await migrate({
 *   sqlitePath: "music_time_machine.db",
 *   databaseUrl: "postgresql://localhost/music_time_machine_pg",
 * });
 * console.log(report.tables);
 * ```
 *
 * @example Command line
 * ```sh
 * deno run -A migrate.ts --sqlite music_time_machine.db --dry-run
 * ```
 *
 * @module
 */

import { runCli } from "./src/cli_worker.ts";

export type {
  CancelKey,
  ColumnReport,
  ConnectionInfo,
  ConnectionPart,
  ConnectionSettings,
  CountCheck,
  ErrorKind,
  InvalidJsonPolicy,
  Mode,
  Options,
  OrphanPolicy,
  Problem,
  ProblemGroup,
  ProblemKind,
  Progress,
  Report,
  Sample,
  SessionSetting,
  SettingSource,
  SslMode,
  Step,
  Strategy,
  TableName,
  TableReport,
  Verification,
} from "./src/types.ts";
export { DEFAULTS } from "./src/types.ts";
export { EXAMPLES_PER_KIND, MigrationError } from "./src/errors.ts";
export {
  type OutputOptions,
  parseDotenv,
  resolveOptions,
  type Settings,
  USAGE,
} from "./src/options.ts";
export { describeConnection, maskUrl } from "./src/connection_settings.ts";
export { hashTextExtended, jsonbText } from "./src/digest.ts";
export { migrate, verify } from "./src/run.ts";
export { formatProblems, formatReport } from "./src/report.ts";
export { main } from "./src/cli.ts";

await runCli(new URL(import.meta.url), import.meta.main, Deno.args);
