/**
 * The report: built from what happened, printed as text.
 *
 * @module
 */

import type {
  ColumnReport,
  Options,
  ProblemGroup,
  Progress,
  Report,
  TableName,
  TableReport,
} from "./types.ts";
import { TABLES } from "./tables.ts";
import { describeConnection } from "./connection_settings.ts";
import type { Source } from "./sqlite_source.ts";
import type { TablePlan } from "./plan.ts";
import type { Loaded } from "./fast_path.ts";

/** What a report says beside what the strategy did: the run's setting. */
interface RunContext {
  plans: TablePlan[];
  source: Source;
  options: Options;
  /** When the run started (performance.now()). */
  started: number;
}

/** The report of a run, built once from what its strategy did. */
export function buildReport(loaded: Loaded, run: RunContext): Report {
  const { plans, source, options } = run;
  const report: Report = {
    ok: loaded.verification.ok,
    mode: options.mode,
    committed: false,
    sqlitePath: options.sqlitePath,
    target: describeConnection(options.connection!),
    schema: options.schema,
    columns: plans.map(columnReport),
    tables: plans.map((plan) => tableReport(plan, source, loaded)),
    verification: loaded.verification,
    policies: loaded.policies ?? [],
    seconds: (performance.now() - run.started) / 1000,
  };
  if (loaded.carefulBecause !== undefined) report.carefulBecause = loaded.carefulBecause;
  return report;
}

function columnReport(plan: TablePlan): ColumnReport {
  return {
    table: plan.spec.name,
    migrated: plan.columns.map((c) => c.name),
    filledByPostgres: plan.filledByPostgres,
    ignored: plan.ignored,
    rowIds: plan.rowIds,
    target: {
      indexes: plan.target.indexes.length,
      constraints: plan.target.constraints.length,
      triggers: plan.target.triggers,
    },
  };
}

function tableReport(plan: TablePlan, source: Source, loaded: Loaded): TableReport {
  const read = source.tables[plan.spec.name].rows;
  const { inserted, updated, pruned, seconds } = loaded.written.get(plan)!;
  const report: TableReport = {
    table: plan.spec.name,
    read,
    inserted,
    updated,
    unchanged: (loaded.compared?.get(plan) ?? read) - inserted - updated,
    skipped: loaded.skipped?.get(plan) ?? 0,
    pruned,
    seconds: (loaded.stageSeconds ?? 0) + seconds,
    strategy: loaded.strategy,
  };
  const buckets = loaded.differingBuckets?.get(plan);
  if (buckets !== undefined) report.differingBuckets = buckets;
  return report;
}

/**
 * Renders a report as the text the CLI prints: summary table, verification,
 * policies applied.
 *
 * @example
 * ```ts
 * import { formatReport, migrate } from "./migrate.ts";
 * console.log(formatReport(await migrate({ mode: "dry-run" })));
 * ```
 */
export function formatReport(report: Report): string {
  const lines: string[] = [];
  const header = ["table", "read", "inserted", "updated", "unchanged", "skipped", "pruned", "time"];
  const rows = report.tables.map((t) => [
    t.table,
    ...[t.read, t.inserted, t.updated, t.unchanged, t.skipped, t.pruned].map(String),
    `${t.seconds.toFixed(1)}s`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ");
  lines.push(line(header), ...rows.map(line), "");
  const v = report.verification;
  for (const c of v.counts) {
    const skipped = c.expected === c.sqlite ? "" : ` (${c.sqlite - c.expected} skipped)`;
    lines.push(
      `${c.table}: SQLite=${c.sqlite}${skipped}, PostgreSQL=${c.postgres} ${
        c.expected === c.postgres ? "ok" : "MISMATCH"
      }`,
    );
  }
  lines.push(
    v.mismatches.length === 0
      ? "content: every row in PostgreSQL equals its SQLite source"
      : "content: MISMATCH",
    `${v.jsonObjects} tracks have queryable raw_json objects`,
  );
  if (v.sample) {
    lines.push(
      `Sample track ${
        JSON.stringify(v.sample.name)
      }: release_date=${v.sample.releaseDate}, explicit=${v.sample.explicit}`,
    );
  }
  lines.push(...formatProblems(v.mismatches));
  if (report.policies.length > 0) {
    lines.push("", "Changed by policy:", ...formatProblems(report.policies));
  }
  lines.push("", outcomeLine(report));
  return lines.join("\n");
}

function outcomeLine(report: Report): string {
  const seconds = `${report.seconds.toFixed(1)}s`;
  if (report.mode === "dry-run") {
    return `Dry run: rolled back, PostgreSQL is unchanged (${seconds}).`;
  }
  if (report.mode === "verify-only") {
    return report.ok
      ? `Verified: PostgreSQL matches SQLite (${seconds}).`
      : `Verification failed: PostgreSQL does not match SQLite (${seconds}).`;
  }
  // A failed run's report is printed too: it committed nothing.
  return report.committed
    ? `Migration committed (${seconds}).`
    : `Rolled back: PostgreSQL is unchanged (${seconds}).`;
}

/**
 * Problems grouped by kind: a title, the first rows by key, the total, the fix.
 *
 * @example
 * ```ts
 * import { formatProblems, MigrationError } from "./migrate.ts";
 * const error = new MigrationError("data", "bad rows");
 * console.log(formatProblems(error.problems).join("\n"));
 * ```
 */
export function formatProblems(groups: ProblemGroup[]): string[] {
  const lines: string[] = [];
  for (const group of groups) {
    lines.push(`${group.title} (${group.total} row${group.total === 1 ? "" : "s"}):`);
    for (const p of group.examples) {
      const where = p.column ? ` column ${p.column}` : "";
      const value = p.value !== undefined ? `: ${p.value}` : "";
      const rule = p.constraint ? ` violates ${p.constraint}` : "";
      lines.push(`  ${p.table} ${p.key}${where}${value}${rule}`);
    }
    if (group.total > group.examples.length) {
      lines.push(`  … and ${group.total - group.examples.length} more`);
    }
    lines.push(`  fix: ${group.hint}`);
  }
  return lines;
}

/** A live progress line on a terminal (never on a pipe): rows per table, rate, ETA. */
export function progressPrinter(): (progress: Progress) => void {
  const tables = new Map<TableName, Progress>();
  const started = performance.now();
  let last = 0;
  const encoder = new TextEncoder();
  return (progress) => {
    tables.set(progress.table, progress);
    const now = performance.now();
    const all = [...tables.values()];
    const done = all.reduce((sum, p) => sum + p.done, 0);
    const total = all.reduce((sum, p) => sum + p.total, 0);
    const finished = all.length === TABLES.length && done >= total;
    if (!finished && now - last < 200) return;
    last = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const counts = all.map((p) => `${p.table} ${p.done}/${p.total}`).join("  ");
    const text = `\r${counts}  ${Math.round(rate)} rows/s  ETA ${eta.toFixed(0)}s\x1b[K`;
    Deno.stderr.writeSync(encoder.encode(finished ? `${text}\n` : text));
  };
}
