// Unit tests of the JSON scanner: no server needed. The expected texts are
// what PostgreSQL 15 prints for `text::jsonb::text`; the differential test in
// test/verification_test.ts holds the scanner to a live server on thousands more.
import assert from "node:assert/strict";
import { explainJsonb, isJsonb, jsonbCanonicalizer } from "./jsonb.ts";

const canonicalText = (text: string) => new TextDecoder().decode(jsonbCanonicalizer()(text));

const PRINTED_AS: [string, string][] = [
  ['{"b":1,"a":2}', '{"a": 2, "b": 1}'],
  ['{"aa":1,"b":2}', '{"b": 2, "aa": 1}'], // shorter keys first, then bytewise
  ['{"é":1,"z":2}', '{"z": 2, "é": 1}'], // é is two bytes in UTF-8
  ['{"a":1,"a":2}', '{"a": 2}'], // the last duplicate wins
  ["[1,2, 3]", "[1, 2, 3]"],
  ['{"k": [true, false, null]}', '{"k": [true, false, null]}'],
  ["  {  }  ", "{}"],
  ["[]", "[]"],
  ["1.0", "1.0"],
  ["0.000", "0.000"],
  ["1e3", "1000"],
  ["1.5e-3", "0.0015"],
  ["-0", "0"],
  ["12345678901234567890", "12345678901234567890"],
  // An exponent moves the point and sets the display scale: max(0, fraction digits − exponent).
  ["1.25e1", "12.5"],
  ["1.50e1", "15.0"],
  ["0.0e0", "0.0"],
  ["0.00e1", "0.0"],
  ["12e-1", "1.2"],
  ["-0.50e2", "-50"],
  ["5E+2", "500"],
  ['"\\u00e9\\n\\t\\"/"', '"é\\n\\t\\"/"'],
  ['"\\ud83d\\ude00"', '"😀"'],
  ['"\\\\/"', '"\\\\/"'],
];

Deno.test("jsonb canonical text: keys sorted and deduplicated, spacing, numbers and escapes as jsonb_out prints them", () => {
  for (const [input, printed] of PRINTED_AS) assert.equal(canonicalText(input), printed, input);
});

const REFUSED = [
  "",
  "{",
  '{"a":1,}',
  "[1 2]",
  "01",
  "1.",
  ".5",
  "+1",
  "tru",
  '"\\u0000"', // JSONB cannot hold NUL
  '"\\ud800"', // a lone surrogate
  '"tab\there"', // a raw control character
  "1e1000000000", // beyond numeric's exponent
  "1" + "0".repeat(131072), // beyond numeric's digits before the point
  '{"a":1} x',
];

Deno.test("jsonb canonical text: what JSONB refuses is refused, and isJsonb says so", () => {
  const canonical = jsonbCanonicalizer();
  for (const text of REFUSED) {
    assert.throws(() => canonical(text), SyntaxError, JSON.stringify(text.slice(0, 40)));
    assert.equal(isJsonb(canonical, text), false);
  }
  assert.equal(isJsonb(canonical, '{"ok": true}'), true);
});

Deno.test("jsonb canonicalizers own their buffers: one's result survives another's calls", () => {
  const first = jsonbCanonicalizer();
  const second = jsonbCanonicalizer();
  const kept = first('{"b":1,"a":[1,2]}');
  second('{"z":"' + "x".repeat(100_000) + '"}');
  assert.equal(new TextDecoder().decode(kept), '{"a": [1, 2], "b": 1}');
});

Deno.test("explainJsonb says why and where JSONB refuses a payload", () => {
  const cases: [string, string][] = [
    [
      `{"name": "Heat Days`,
      "ends early: the text stops after 19 characters, inside a string (cut off?)",
    ],
    [
      `{"album": {"name": "x"}`,
      "ends early: the text stops after 23 characters, before it is closed (cut off?)",
    ],
    [`{"a": 1,}`, "expected double-quoted property name at character 9"],
    [`{"a": 1} x`, "unexpected non-whitespace character after JSON at character 10"],
    [`not json`, "unexpected character 'o' where a JSON value should be"],
    [`{"a": "\\u0000"}`, "\\u0000 at character 8 is valid JSON, but JSONB cannot store it"],
    [`["\\ud800"]`, "\\ud800 at character 3 is valid JSON, but JSONB cannot store it"],
    [`[1e999999999999]`, "valid JSON, but a number is beyond the range of PostgreSQL's numeric"],
  ];
  const canonical = jsonbCanonicalizer();
  for (const [text, why] of cases) {
    assert.equal(isJsonb(canonical, text), false, text);
    assert.equal(explainJsonb(text), why, text);
  }
  assert.equal(isJsonb(canonical, `["\\ud83d\\ude00"]`), true, "a surrogate pair is fine");
});
