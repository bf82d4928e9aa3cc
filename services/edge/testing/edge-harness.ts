import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { exportJWK, SignJWT } from "jose";
import { TranscodeFixtureService } from "../../../gen/platform/testing/v1/transcode_fixture_pb.js";
import { createTokenVerifier, type TokenVerifier } from "../../../platform/auth/token-verifier.js";
import { ReadinessMonitor } from "../../../platform/health/readiness.js";
import { createLogger } from "../../../platform/log/logger.js";
import {
  createRpcServer,
  registerService,
  type ServiceRegistration,
} from "../../../platform/server/rpc-server.js";
import { createMetrics } from "../../../platform/telemetry/metrics.js";
import { startTestService } from "../../../platform/testing/service-harness.js";
import { createFixtureService } from "../../../platform/transcoder/testing/fixture-service.js";
import { createEdgeDefinition } from "../service.js";

export const ISSUER = "edge-test-issuer";
export const AUDIENCE = "edge-test-audience";

/** Signs access tokens the test verifier accepts (EdDSA, at+jwt). */
export async function createTestAuth() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
  const verifier = createTokenVerifier({
    issuer: ISSUER,
    audience: AUDIENCE,
    localJwks: () => ({ keys: [jwk] }),
  });
  const token = (sub: string, roles: string[] = ["customer"]) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ roles })
      .setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(sub)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(privateKey);
  };
  return { verifier, token };
}

/** Every method of `service` fails with INVALID_ARGUMENT: an upstream that never 5xx's. */
function rejectingImpl(service: DescService): ServiceImpl<DescService> {
  const impl: Record<string, unknown> = {};
  for (const method of service.methods) {
    const error = () =>
      new ConnectError("stub upstream rejects every request", Code.InvalidArgument);
    impl[method.localName] =
      method.methodKind === "server_streaming"
        ? // biome-ignore lint/correctness/useYield: the stub fails before yielding
          async function* () {
            throw error();
          }
        : () => {
            throw error();
          };
  }
  return impl as ServiceImpl<DescService>;
}

/**
 * A real platform server (one port, HTTP/1.1 + h2c, gRPC fast path) hosting
 * the transcoder fixture service and, optionally, stubs of other contracts.
 */
export async function startUpstream(
  stubs: readonly DescService[] = [],
  options: { fixture?: boolean } = {},
) {
  const registrations: ServiceRegistration[] = [
    ...(options.fixture === false
      ? []
      : [registerService(TranscodeFixtureService, createFixtureService())]),
    ...stubs.map((s) => registerService(s, rejectingImpl(s))),
  ];
  const readiness = new ReadinessMonitor([]);
  const server = createRpcServer({
    name: "edge-upstream",
    host: "127.0.0.1",
    port: 0,
    services: registrations,
    logger: createLogger({ service: "edge-upstream", level: "silent" }),
    metrics: createMetrics("edge-upstream", { defaults: false }),
    readiness,
  });
  const port = await server.listen();
  await readiness.start();
  return { url: `http://127.0.0.1:${port}`, port, close: () => server.close() };
}

/** The real edge definition, in process, pointed at the given upstreams. */
export async function startEdge(options: {
  services: readonly DescService[];
  upstreams: Record<string, string>;
  verifier: TokenVerifier;
  env?: Record<string, string>;
}) {
  const env = {
    EDGE_RATE_LIMIT_PREFIX: `edge-test:${randomBytes(6).toString("hex")}:`,
    ...options.env,
  };
  return startTestService(
    createEdgeDefinition({
      env: { ...process.env, ...env },
      services: options.services,
      upstreams: options.upstreams,
      tokenVerifier: options.verifier,
    }),
    env,
  );
}
