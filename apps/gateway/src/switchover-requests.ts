import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DomainError, Topics, type ClusterCommand } from '@shortener/contracts';
import type { EventProducer } from '@shortener/events';
import type { Topology } from '@shortener/topology';
import { EVENT_PRODUCER } from './gateway.constants';

export const SWITCHOVER_TIMEOUT_MS = 20_000;

/**
 * A planned switchover is the leading monitor's job: the gateway sends the request on
 * `cluster.commands` and answers once the topology shows a new primary for the shard.
 */
@Injectable()
export class SwitchoverRequests {
  constructor(@Inject(EVENT_PRODUCER) private readonly producer: EventProducer) {}

  async request(shard: number, epoch: number, current: () => Topology | null): Promise<Topology> {
    const before = current()?.shards.find((candidate) => candidate.id === shard)?.primary;
    const command: ClusterCommand = {
      type: 'switchover',
      version: 1,
      shard,
      epoch,
      requestId: randomUUID(),
      at: new Date().toISOString(),
    };
    try {
      await this.producer.send([{ topic: Topics.clusterCommands, key: String(shard), value: JSON.stringify(command) }]);
    } catch {
      throw new DomainError('dependency-unavailable', 'the switchover request could not be sent', { retryAfterSeconds: 5 });
    }
    const deadline = Date.now() + SWITCHOVER_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const topology = current();
      const primary = topology?.shards.find((candidate) => candidate.id === shard)?.primary;
      if (topology && topology.epoch > epoch && primary !== before) return topology;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new DomainError('dependency-unavailable', `no monitor completed the switchover of shard ${shard} in time`, {
      retryAfterSeconds: 5,
    });
  }
}
