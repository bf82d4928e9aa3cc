// Container health probe: GET http://127.0.0.1:$PORT<path> must answer 200.
// Used by the image's HEALTHCHECK (/healthz) and compose (/readyz); the image
// has no curl or wget, and a Node one-liner keeps it that way.
const path = process.argv[2] ?? "/healthz";
const port = process.env.PORT ?? "8080";
try {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    signal: AbortSignal.timeout(2500),
  });
  process.exit(response.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
