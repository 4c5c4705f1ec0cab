import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  DomainError,
  Topics,
  type AdoptedNode,
  type AddShardCommand,
  type DomainErrorKind,
  type DrainShardCommand,
  type OperationDocumentV1,
  type OperationRecord,
} from '@shortener/contracts';
import type { EventProducer, OperationsFollower } from '@shortener/events';
import { EVENT_PRODUCER, OPERATIONS_FOLLOWER } from './gateway.constants';

/** How long the gateway waits for the leading monitor to answer a request with the operation's record. */
export const OPERATION_ANSWER_TIMEOUT_MS = 15_000;

type Refusal = NonNullable<OperationRecord['refused']>;

/** What each reason the monitor gives for a refusal becomes at the API (docs/reference.md section 7). */
const refusalKinds: Record<Refusal['reason'], DomainErrorKind> = {
  conflict: 'conflict',
  'last-shard': 'conflict',
  'shard-exists': 'conflict',
  'not-a-shard': 'not-found',
  'bad-request': 'validation',
  'no-slots': 'validation',
  unsupported: 'validation',
};

export function refusalError(refused: Refusal): DomainError {
  return new DomainError(refusalKinds[refused.reason], refused.message);
}

/** The 409 of a request made while another operation runs: it names that operation. */
export function runningConflict(running: OperationDocumentV1): DomainError {
  return new DomainError('conflict', `operation ${running.id} (${running.type} of shard ${running.shard}) is running; one operation runs at a time`);
}

/**
 * Adding and draining shards is the leading monitor's job: the gateway names the
 * operation, sends the request on `cluster.commands` and answers once the monitor has
 * published the operation's first record (or its refusal) on `cluster.operations`.
 */
@Injectable()
export class OperationRequests {
  constructor(
    @Inject(EVENT_PRODUCER) private readonly producer: EventProducer,
    @Inject(OPERATIONS_FOLLOWER) private readonly operations: OperationsFollower,
  ) {}

  addShard(nodes: AdoptedNode[] | undefined): Promise<OperationDocumentV1> {
    const operationId = randomUUID();
    return this.request({ type: 'add-shard', version: 1, operationId, ...(nodes ? { nodes } : {}), requestId: randomUUID(), at: new Date().toISOString() });
  }

  drainShard(shard: number): Promise<OperationDocumentV1> {
    const operationId = randomUUID();
    return this.request({ type: 'drain-shard', version: 1, operationId, shard, requestId: randomUUID(), at: new Date().toISOString() });
  }

  /** Refuses at once (409) while an operation runs, as far as this gateway can see; the monitor checks again. */
  refuseWhileRunning(): void {
    const running = this.operations.running();
    if (running) throw runningConflict(running.document);
  }

  private async request(command: AddShardCommand | DrainShardCommand): Promise<OperationDocumentV1> {
    this.refuseWhileRunning();
    try {
      await this.producer.send([{ topic: Topics.clusterCommands, key: command.operationId, value: JSON.stringify(command) }]);
    } catch {
      throw new DomainError('dependency-unavailable', `the ${command.type} request could not be sent`, { retryAfterSeconds: 5 });
    }
    const record = await this.operations.waitFor(command.operationId, OPERATION_ANSWER_TIMEOUT_MS);
    if (!record) {
      throw new DomainError('dependency-unavailable', `no leading monitor answered the ${command.type} request in time`, { retryAfterSeconds: 5 });
    }
    if (record.refused) throw refusalError(record.refused);
    return record.document;
  }
}
