import { jetstreamManager } from "@nats-io/jetstream";
import { IdentityService } from "../../gen/commerce/identity/v1/identity_service_pb.js";
import { createTokenVerifier } from "../../platform/auth/token-verifier.js";
import type { Env } from "../../platform/config/env.js";
import { createOutboxRelay, type OutboxRelay } from "../../platform/events/relay.js";
import { domainStream, provisionStreams } from "../../platform/events/streams.js";
import { registerService } from "../../platform/server/rpc-server.js";
import type { BackgroundTask, ServiceDefinition } from "../../platform/service/run-service.js";
import { loadIdentityConfig } from "./identity-config.js";
import { createIdentityCore } from "./identity-core.js";
import { createIdentityHandlers } from "./rpc/identity-handlers.js";

/**
 * The identity service as a definition: main.ts runs it, tests start it
 * in-process with their own environment.
 */
export function createIdentityDefinition(env: Env = process.env): ServiceDefinition {
  return {
    name: "identity",
    migrations: new URL("./migrations/", import.meta.url),
    needs: { postgres: true, redis: true, nats: true },
    async build(runtime) {
      const config = loadIdentityConfig(env);
      const database = runtime.database!;
      const deps = await createIdentityCore({
        config,
        sql: database.sql,
        redis: runtime.redis,
        logger: runtime.logger,
      });
      // Identity verifies its own tokens with its own keys: no JWKS round trip.
      const tokenVerifier = createTokenVerifier({
        issuer: config.auth.issuer,
        audience: config.auth.audience,
        clockToleranceSec: config.auth.clockToleranceSec,
        localJwks: () => deps.signingKeys.jwks(),
        ...(config.auth.serviceTokenSecret
          ? {
              serviceTokens: {
                issuer: config.auth.serviceIssuer,
                secret: config.auth.serviceTokenSecret,
              },
            }
          : {}),
      });
      const background: BackgroundTask[] = [];
      if (config.outboxRelay) {
        let relay: OutboxRelay | undefined;
        background.push({
          name: "outbox-relay",
          async start() {
            const nc = runtime.nats!;
            await provisionStreams(await jetstreamManager(nc), [domainStream(config.eventsDomain)]);
            relay = createOutboxRelay({
              sql: database.sql,
              schema: database.schema,
              nc,
              registry: runtime.metrics.registry,
              logger: runtime.logger,
            });
            await relay.start();
          },
          async stop() {
            await relay?.stop();
          },
        });
      }
      return {
        services: [registerService(IdentityService, createIdentityHandlers(deps))],
        background,
        tokenVerifier,
      };
    },
  };
}
