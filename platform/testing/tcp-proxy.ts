import net from "node:net";

/**
 * A TCP proxy for fault tests (no Toxiproxy here, `tc netem` does not work):
 * put it between a client and a real server, then pause, delay, refuse or
 * cut the traffic without touching the shared server process.
 */
export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  /** `host:port` for clients. */
  readonly address: string;
  /** Stop forwarding in both directions; bytes are held until resume(). */
  pause(): void;
  resume(): void;
  /** Delay every forwarded chunk by this many milliseconds. */
  setLatency(ms: number): void;
  /** Destroy every open connection; held bytes are lost. */
  cut(): void;
  /** Refuse new connections (accept and immediately close) until enable(). */
  disable(): void;
  enable(): void;
  /** cut() + disable(): the server looks down. */
  down(): void;
  /** enable() + resume(): the server is back. */
  up(): void;
  openConnections(): number;
  close(): Promise<void>;
}

interface Pipe {
  client: net.Socket;
  upstream: net.Socket;
  held: { to: net.Socket; chunk: Buffer }[];
}

export async function startTcpProxy(target: {
  host: string;
  port: number;
  listenHost?: string;
}): Promise<TcpProxy> {
  const pipes = new Set<Pipe>();
  let paused = false;
  let enabled = true;
  let latencyMs = 0;

  const forward = (pipe: Pipe, to: net.Socket, chunk: Buffer) => {
    if (paused) {
      pipe.held.push({ to, chunk });
      return;
    }
    if (latencyMs > 0) {
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, latencyMs);
    } else if (!to.destroyed) {
      to.write(chunk);
    }
  };

  const server = net.createServer((client) => {
    if (!enabled) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: target.host, port: target.port });
    const pipe: Pipe = { client, upstream, held: [] };
    pipes.add(pipe);
    const teardown = () => {
      pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => forward(pipe, upstream, chunk));
    upstream.on("data", (chunk) => forward(pipe, client, chunk));
    client.on("close", teardown);
    upstream.on("close", teardown);
    client.on("error", teardown);
    upstream.on("error", teardown);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, target.listenHost ?? "127.0.0.1", () => resolve());
  });
  const { address: host, port } = server.address() as net.AddressInfo;

  const cut = () => {
    for (const pipe of [...pipes]) {
      pipe.held = [];
      pipe.client.destroy();
      pipe.upstream.destroy();
      pipes.delete(pipe);
    }
  };
  const resume = () => {
    paused = false;
    for (const pipe of pipes) {
      const held = pipe.held;
      pipe.held = [];
      for (const { to, chunk } of held) forward(pipe, to, chunk);
    }
  };

  return {
    host,
    port,
    address: `${host}:${port}`,
    pause: () => {
      paused = true;
    },
    resume,
    setLatency: (ms) => {
      latencyMs = ms;
    },
    cut,
    disable: () => {
      enabled = false;
    },
    enable: () => {
      enabled = true;
    },
    down: () => {
      enabled = false;
      cut();
    },
    up: () => {
      enabled = true;
      resume();
    },
    openConnections: () => pipes.size,
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
