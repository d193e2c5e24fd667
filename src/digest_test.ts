// Unit tests of the digests' JavaScript side: no server needed. The expected
// hashes are PostgreSQL 15's `hashtextextended(text, 0)`; the differential
// tests in test/verification_test.ts compare the two sides on many more.
import assert from "node:assert/strict";
import { DigestSum, hashTextExtended, jsonbText } from "./digest.ts";

const POSTGRES_HASHES: [string, bigint][] = [
  ["", -6939563903564495251n],
  ["a", 3591986179850072241n],
  ["track", -8561746602840195487n],
  ["Dance Rain Summer", -820406712641501678n],
  ["🎵 ü", 4298048925608199526n],
  ["x".repeat(100), -6927006773748011226n],
];

Deno.test("hashTextExtended() equals PostgreSQL's hashtextextended(text, 0) on known values", () => {
  for (const [text, hash] of POSTGRES_HASHES) assert.equal(hashTextExtended(text), hash, text);
});

Deno.test("jsonbText() decodes the canonical bytes of a payload", () => {
  assert.equal(jsonbText('{"b":[1.50,2e2],"a":"é"}'), '{"a": "é", "b": [1.50, 200]}');
});

Deno.test("DigestSum: the sum of 64-bit digests wraps as PostgreSQL's int8 sum, in any order", () => {
  const digests = [2n ** 62n, 2n ** 62n, 3n, -(2n ** 63n), 12345678901234567n];
  const forward = new DigestSum();
  const backward = new DigestSum();
  const halves = (d: bigint) => {
    const unsigned = BigInt.asUintN(64, d);
    return { high: Number(unsigned >> 32n), low: Number(unsigned & 0xffffffffn) };
  };
  for (const d of digests) forward.add(halves(d));
  for (const d of [...digests].reverse()) backward.add(halves(d));
  const wrapped = BigInt.asIntN(64, digests.reduce((a, b) => a + b, 0n));
  assert.equal(forward.value, wrapped);
  assert.equal(backward.value, wrapped);
  assert.equal(forward.rows, digests.length);
});
