// Parses and validates an AsyncAPI document with the official parser; prints each diagnostic as a JSON line
// ({severity, code, message, path, line}) and exits 1 if any is an error. Usage: node validate_asyncapi.mjs FILE
import { readFileSync } from "node:fs";
import { Parser, fromFile } from "@asyncapi/parser";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate_asyncapi.mjs FILE");
  process.exit(2);
}
readFileSync(file); // a missing file is an error of its own, not a parser diagnostic
const SEVERITY = ["error", "warning", "info", "hint"];
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
let errors = 0;
for (const d of diagnostics) {
  const severity = SEVERITY[d.severity] ?? String(d.severity);
  if (severity === "error") errors += 1;
  const line = d.range && d.range.start ? d.range.start.line + 1 : null;
  console.log(JSON.stringify({ severity, code: d.code, message: d.message, path: d.path.join("."), line }));
}
// YAML reads an unquoted comma inside a flow mapping ({description: a, b}) as a second key with no value, which
// the parser accepts when the key is a string; no value in this document is ever null, so any null is that slip.
const nulls = [];
const walk = (value, path) => {
  if (value === null) nulls.push(path);
  else if (typeof value === "object") for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
};
if (document) walk(document.json(), "");
for (const path of nulls) {
  errors += 1;
  console.log(JSON.stringify({ severity: "error", code: "null-value", message: "key with no value (an unquoted comma?)", path, line: null }));
}
if (!document || errors > 0) {
  console.log(JSON.stringify({ result: "invalid", errors }));
  process.exit(1);
}
console.log(JSON.stringify({ result: "valid", version: document.version(), channels: document.channels().length }));
