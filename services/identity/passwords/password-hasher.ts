import { randomBytes } from "node:crypto";
import { type Algorithm, hash, parseOptions, verify } from "@node-rs/argon2";
import { UnavailableError } from "../../../platform/errors/domain-errors.js";

export interface Argon2Params {
  memoryKiB: number;
  timeCost: number;
  parallelism: number;
  /** Hashes allowed to wait for the thread pool before new ones are shed. */
  maxPending: number;
}

// `Algorithm` is a const enum in the typings; isolatedModules cannot inline it.
const ARGON2ID = 2 as Algorithm;

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(storedHash: string, password: string): Promise<boolean>;
  /**
   * Same cost as a real verify, against a hash nobody knows the password of:
   * a sign-in with an unknown email takes as long as one with a wrong password.
   */
  verifyDummy(password: string): Promise<void>;
  /** True when the hash was made with weaker parameters than the current ones. */
  needsRehash(storedHash: string): boolean;
  readonly params: Argon2Params;
}

/**
 * argon2id via @node-rs/argon2, whose async functions run on libuv's thread
 * pool (off the event loop). Admission is bounded: each hash holds ~m KiB
 * while it runs, and a flood of sign-ins must not queue unbounded work.
 */
export async function createPasswordHasher(params: Argon2Params): Promise<PasswordHasher> {
  const options = {
    algorithm: ARGON2ID,
    memoryCost: params.memoryKiB,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
  };
  let pending = 0;
  const admit = async <T>(work: () => Promise<T>): Promise<T> => {
    if (pending >= params.maxPending) {
      throw new UnavailableError(
        "too many sign-ins in progress, retry shortly",
        "PASSWORD_HASHER_BUSY",
      );
    }
    pending++;
    try {
      return await work();
    } finally {
      pending--;
    }
  };
  const dummyHash = await hash(randomBytes(32).toString("base64url"), options);
  return {
    params,
    hash: (password) => admit(() => hash(password, options)),
    verify: (storedHash, password) => admit(() => verify(storedHash, password).catch(() => false)),
    async verifyDummy(password) {
      await admit(() => verify(dummyHash, password).catch(() => false));
    },
    needsRehash(storedHash) {
      try {
        const parsed = parseOptions(storedHash);
        return (
          parsed.algorithm !== ARGON2ID ||
          parsed.memoryCost < params.memoryKiB ||
          parsed.timeCost < params.timeCost
        );
      } catch {
        return true;
      }
    },
  };
}
