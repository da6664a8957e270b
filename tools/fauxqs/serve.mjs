// Starts fauxqs bound to 127.0.0.1 only (its own CLI binds 0.0.0.0) and writes the port it got
// to the file named by the second argument, so callers can ask for port 0 without a race.
import { writeFileSync } from "node:fs";
import { buildApp } from "fauxqs";

const [portArg = "0", portFile] = process.argv.slice(2);
const app = buildApp({ logger: process.env.FAUXQS_LOGGER === "true" });
await app.listen({ port: Number(portArg), host: "127.0.0.1" });
const { port } = app.server.address();
if (portFile) writeFileSync(portFile, `${port}\n`);
console.log(`fauxqs listening on http://127.0.0.1:${port}`);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await app.close();
    process.exit(0);
  });
}
