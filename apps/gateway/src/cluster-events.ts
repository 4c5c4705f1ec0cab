import type { NodeHealth } from '@shortener/contracts';
import type { Topology } from '@shortener/topology';

/** What the stream tells: the topology as the gateway follows it, node health from the readers, running operations. */
export interface ClusterSource {
  /** The topology before the follower delivered one (epoch 0: what the configuration says). */
  configuredTopology(): Topology;
  health(): Promise<NodeHealth[]>;
  /** The document of GET /api/cluster for this topology and health. */
  document(topology: Topology, health: NodeHealth[]): unknown;
  /** The documents of GET /api/cluster/operations. */
  operations(): unknown[];
}

export interface EventStream {
  write(chunk: string): void;
  end(): void;
}

export interface ClusterEventOptions {
  /** How often node health is asked for while someone listens; a change is sent at once. */
  healthIntervalMs: number;
  /** A comment line this often keeps proxies from closing a quiet stream. */
  keepAliveMs: number;
  /** The reconnection delay the browser is told to use. */
  retryMs: number;
}

/** One server-sent event; JSON has no raw newlines, so the data is one line. */
export function serverSentEvent(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The fan-out behind GET /api/cluster/events. A new stream gets the cluster document and
 * the operations at once; after that every stream gets `topology` on each new epoch (as
 * soon as the gateway's topology follower sees it), `health` when node health or lag
 * changes; `operations` whenever the operations follower reports a change that alters
 * the list (a monitor publishes progress records often; only news is sent). Health is
 * polled once for all streams, and only while at least one is open.
 */
export class ClusterEventHub {
  private readonly streams = new Set<EventStream>();
  private health: NodeHealth[] = [];
  private healthKey = '';
  private poller: NodeJS.Timeout | null = null;
  private keepAlive: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private latest: Topology | null = null;
  private operationsKey = '';

  constructor(
    private readonly source: ClusterSource,
    private readonly options: ClusterEventOptions = { healthIntervalMs: 2000, keepAliveMs: 15_000, retryMs: 2000 },
  ) {}

  get listeners(): number {
    return this.streams.size;
  }

  /** Opens a stream; the returned function closes it (the client went away). */
  subscribe(stream: EventStream): () => void {
    this.streams.add(stream);
    const topology = this.topology();
    stream.write(`retry: ${this.options.retryMs}\n\n`);
    stream.write(serverSentEvent('topology', this.source.document(topology, this.health), topology.epoch));
    const operations = this.source.operations();
    this.operationsKey = JSON.stringify(operations);
    stream.write(serverSentEvent('operations', operations));
    this.startTimers();
    void this.pollHealth();
    return () => this.unsubscribe(stream);
  }

  /** The topology follower applied a newer epoch. */
  topologyChanged(topology: Topology): void {
    this.latest = topology;
    this.broadcast(serverSentEvent('topology', this.source.document(topology, this.health), topology.epoch));
  }

  /** The operations follower applied a record; the list is sent if it differs from the last one sent. */
  operationsChanged(): void {
    // A stream that opens later gets the list at once.
    if (this.streams.size === 0) return;
    const operations = this.source.operations();
    const key = JSON.stringify(operations);
    if (key === this.operationsKey) return;
    this.operationsKey = key;
    this.broadcast(serverSentEvent('operations', operations));
  }

  /** Asks for node health once (concurrent callers share the request) and sends it if it changed. */
  pollHealth(): Promise<void> {
    this.polling ??= this.source
      .health()
      .then((health) => {
        // checkedAt changes at every probe; only a change of state or lag is news.
        const key = JSON.stringify(health.map(({ checkedAt: _checkedAt, ...state }) => state));
        if (key === this.healthKey) return;
        this.health = health;
        this.healthKey = key;
        const topology = this.topology();
        this.broadcast(serverSentEvent('health', this.source.document(topology, health), topology.epoch));
      })
      .catch(() => undefined)
      .finally(() => {
        this.polling = null;
      });
    return this.polling;
  }

  /** Ends every stream (the gateway shuts down: open streams must not hold the server open). */
  close(): void {
    for (const stream of [...this.streams]) {
      this.unsubscribe(stream);
      stream.end();
    }
  }

  private topology(): Topology {
    return this.latest ?? this.source.configuredTopology();
  }

  private unsubscribe(stream: EventStream): void {
    this.streams.delete(stream);
    if (this.streams.size > 0) return;
    if (this.poller) clearInterval(this.poller);
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.poller = this.keepAlive = null;
  }

  private startTimers(): void {
    this.poller ??= setInterval(() => void this.pollHealth(), this.options.healthIntervalMs);
    this.keepAlive ??= setInterval(() => this.broadcast(': keep-alive\n\n'), this.options.keepAliveMs);
    this.poller.unref();
    this.keepAlive.unref();
  }

  private broadcast(chunk: string): void {
    for (const stream of this.streams) stream.write(chunk);
  }
}
