// `npm run check:generated`: regenerates the protobuf code into a scratch folder and fails when the
// checked-in src/gen differs, so nobody edits generated code by hand or forgets to regenerate.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const scratch = mkdtempSync(join(tmpdir(), "darktower-gen-"));
try {
  const template = readFileSync("buf.gen.yaml", "utf8").replace(
    "out: src/gen",
    `out: ${join(scratch, "gen")}`,
  );
  const templatePath = join(scratch, "buf.gen.yaml");
  writeFileSync(templatePath, template);
  execFileSync("buf", ["generate", "../../proto", "--template", templatePath], { stdio: "inherit" });
  const fresh = readdirSync(join(scratch, "gen")).sort();
  const current = readdirSync("src/gen").sort();
  const stale = [...new Set([...fresh, ...current])].filter((name) => {
    if (!fresh.includes(name) || !current.includes(name)) return true;
    return readFileSync(join(scratch, "gen", name), "utf8") !== readFileSync(join("src/gen", name), "utf8");
  });
  if (stale.length > 0) {
    console.error(`src/gen is stale (${stale.join(", ")}): run \`npm run generate\``);
    process.exitCode = 1;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
