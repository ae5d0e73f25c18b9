// Build the widget's served folder: widget/dist/ = our sources (src/) + socket.io-client's
// browser bundle from node_modules (installed by `npm ci` from package-lock.json).
// No bundler: the browser loads vendor/socket.io.min.js, then widget.js.
// Run by `make widget`; the web server serves widget/dist/ at /widget/.
import { cpSync, mkdirSync, rmSync, renameSync, writeFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");
const tmp = join(here, "dist.tmp");
const vendor = join(here, "node_modules", "socket.io-client", "dist");
const version = JSON.parse(readFileSync(join(here, "node_modules", "socket.io-client", "package.json"), "utf8")).version;

rmSync(tmp, { recursive: true, force: true });
mkdirSync(join(tmp, "vendor"), { recursive: true });
cpSync(join(here, "src"), tmp, { recursive: true });
cpSync(join(vendor, "socket.io.min.js"), join(tmp, "vendor", "socket.io.min.js"));
cpSync(join(here, "node_modules", "socket.io-client", "LICENSE"), join(tmp, "vendor", "socket.io-client.LICENSE"));
writeFileSync(join(tmp, "BUILD.json"), JSON.stringify({ "socket.io-client": version }) + "\n");
// swap in one step, so a running server never serves a half-copied folder
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
console.log(`widget built: ${out} (socket.io-client ${version})`);
