// The package as npm would publish it: what `npm pack` puts in, that its
// name resolves through "exports", and that index.d.ts declares exactly
// what index.js exports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL("..", import.meta.url));

test("npm pack builds the package with the module, its types and README, and no tests", () => {
  const r = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: dir, encoding: "utf8" });
  assert.equal(r.status, 0, `npm pack --dry-run: ${r.stderr}`);
  const [pack] = JSON.parse(r.stdout);
  const files = pack.files.map((f) => f.path).sort();
  assert.deepEqual(files, ["README.md", "backoff.js", "index.d.ts", "index.js", "package.json", "seen.js", "sse.js"]);
  assert.equal(pack.name, "@rig-go/client");
});

test("the package's name resolves through its exports to the module, which has no dependencies", async () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(pkg.type, "module");
  assert.equal(pkg.dependencies, undefined);
  const byName = await import("@rig-go/client");
  const byPath = await import("../index.js");
  assert.equal(byName.connect, byPath.connect);
  // Every import of the package's files is one of its own files.
  for (const f of pkg.files.filter((f) => f.endsWith(".js"))) {
    const src = readFileSync(new URL(`../${f}`, import.meta.url), "utf8");
    for (const [, spec] of src.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gm)) {
      assert.ok(spec.startsWith("./") && pkg.files.includes(spec.slice(2)), `${f} imports ${spec}`);
    }
  }
});

test("index.d.ts declares every export of index.js, and nothing else", async () => {
  const mod = await import("../index.js");
  const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
  const declared = [...dts.matchAll(/^export (?:declare )?(?:function|class|const) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(mod).sort());
});
