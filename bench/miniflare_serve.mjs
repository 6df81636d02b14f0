// Serve one Worker with miniflare (the library `wrangler dev` runs workerd through), without
// wrangler's development tooling (reload proxy, inspector): see bench/miniflare_worker.py. Options come
// as JSON (argv[2]) in miniflare 4's form, which miniflare 5 converts; a module's `base64` field
// holds its contents. The script prints the Worker's URL, then serves until it is terminated.
import { readFileSync } from "node:fs";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";

const options = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const module of Array.isArray(options.modules) ? options.modules : []) {
  if (module.base64 !== undefined) {
    module.contents = Buffer.from(module.base64, "base64");
    delete module.base64;
  }
}
const mf = new Miniflare(convertV4MiniflareOptions(options));
const url = await mf.ready;
console.log(url.href);
const stop = async () => { await mf.dispose(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
