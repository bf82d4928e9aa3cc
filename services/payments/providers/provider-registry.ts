import type { PaymentProvider } from "./provider.js";

/** Providers by name; a payment remembers its provider's name. */
export interface ProviderRegistry {
  get(name: string): PaymentProvider | undefined;
  names(): string[];
  close(): Promise<void>;
}

export function createProviderRegistry(providers: readonly PaymentProvider[]): ProviderRegistry {
  const byName = new Map<string, PaymentProvider>();
  for (const provider of providers) {
    if (byName.has(provider.name)) throw new Error(`provider "${provider.name}" registered twice`);
    byName.set(provider.name, provider);
  }
  return {
    get: (name) => byName.get(name),
    names: () => [...byName.keys()],
    async close() {
      await Promise.allSettled([...byName.values()].map((p) => p.close?.()));
    },
  };
}
