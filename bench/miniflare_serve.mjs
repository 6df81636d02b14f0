// Serve one Worker with miniflare (the library `wrangler dev` runs workerd through), without
// wrangler's development tooling (reload proxy, inspector): see bench/miniflare_worker.py. Options come
// as JSON (argv[2]); the script prints the Worker's URL, then serves until it is terminated.
import { readFileSync } from "node:fs";
import { Miniflare } from "miniflare";

const options = JSON.parse(readFileSync(process.argv[2], "utf8"));
const mf = new Miniflare(options);
const url = await mf.ready;
console.log(url.href);
const stop = async () => { await mf.dispose(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
