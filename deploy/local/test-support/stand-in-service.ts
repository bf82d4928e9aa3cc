/**
 * A tiny stand-in for a mesh service, for the starter's own tests: serves
 * /healthz and /readyz on PORT and exits 0 on SIGTERM/SIGINT, unless told to
 * misbehave through STAND_IN_* variables.
 */
import http from "node:http";

const port = Number(process.env["PORT"] ?? 0);
const host = process.env["HOST"] ?? "127.0.0.1";
// STAND_IN_FAULTY=<service> limits the misbehaviour below to that one service of a mesh.
const faulty = process.env["STAND_IN_FAULTY"];
const misbehave = !faulty || (process.env["DB_SCHEMA"] ?? "").endsWith(faulty);
const readyAfterMs = Number(process.env["STAND_IN_READY_AFTER_MS"] ?? 0);
const neverReady = misbehave && process.env["STAND_IN_NEVER_READY"] === "1";
const ignoreTerm = misbehave && process.env["STAND_IN_IGNORE_TERM"] === "1";
const crashAfterMs = misbehave ? process.env["STAND_IN_CRASH_AFTER_MS"] : undefined;
const startedAt = Date.now();

const server = http.createServer((req, res) => {
  const ready = !neverReady && Date.now() - startedAt >= readyAfterMs;
  if (req.url === "/healthz") res.writeHead(200).end("ok");
  else if (req.url === "/readyz")
    res.writeHead(ready ? 200 : 503).end(ready ? "ready" : "not ready");
  else res.writeHead(404).end();
});
server.listen(port, host, () => {
  console.log(
    `stand-in ${process.pid} listening on ${host}:${(server.address() as { port: number }).port}`,
  );
});

if (crashAfterMs !== undefined) {
  setTimeout(() => {
    console.error("stand-in crashing on purpose");
    process.exit(3);
  }, Number(crashAfterMs));
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (ignoreTerm) {
      console.log(`ignoring ${signal}`);
      return;
    }
    console.log(`got ${signal}, stopping`);
    // An unterminated last line: the starter must still show it.
    process.stdout.write("bye");
    server.close(() => process.exit(0));
  });
}
