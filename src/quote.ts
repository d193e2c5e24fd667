/**
 * Identifiers and literals quoted for SQL text.
 *
 * @module
 */

/** A SQLite identifier in double quotes (SQLite and PostgreSQL agree on this). */
export const q = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`;

/** A SQL string literal, for the few statements (COMMENT) that take no parameters. */
export const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
