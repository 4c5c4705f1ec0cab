import type { AddShardCommand, DrainShardCommand, OperationRecord } from '@shortener/contracts';
import { latestSchemaVersion, NodeAdmin, SlotMoveRepository, type ShardPools } from '@shortener/db';
import { counter, gauge } from '@shortener/observability';
import {
  documentOf,
  next,
  OperationRefused,
  resume,
  startOperation,
  stepOf,
  type MoverOptions,
  type Observation,
  type OperationState,
  type Step,
} from '@shortener/resharding';
import { withAddedShard, withoutShard, withSlotMap, type NodeAddress, type Topology } from '@shortener/topology';
import type { NodeControl } from './node-control';

const slotsMoved = counter('shortener_reshard_slots_moved_total', 'Slots switched to a new owner by resharding operations');
const rowsCopied = counter('shortener_reshard_rows_copied_total', 'Rows copied to a new owner (copy and catch-up)');
const writePause = gauge('shortener_reshard_last_write_pause_ms', 'Write pause of the last slot batch switched');
const operationRunning = gauge('shortener_reshard_operation_running', '1 while this leader runs a resharding operation');

/** Rows per copy page: one round trip each way, small enough for the monitor's connection budget. */
const COPY_PAGE_ROWS = 1000;
const CHANGES_PER_PASS = 2000;
const CLEANUP_PAGE_ROWS = 2000;
/** Phases between the catch-up that enters the fence and the switch that ends it. */
const FENCE_WINDOW: ReadonlySet<string> = new Set(['fence', 'final-catch-up', 'verify', 'switch']);
/** Fewer, larger batches than the library default (each costs one fence and one epoch grace); fence to verified within 600 ms, leaving the switch (a Kafka transaction) room inside the 1 s pause; a busy moment may cost a batch a few fence attempts. */
export const RUNNER_MOVER_OPTIONS: Partial<MoverOptions> = {
  limits: { maxSlotsPerBatch: 32, maxRowsPerBatch: 5000 },
  maxFenceAttempts: 20,
  fenceBudgetMs: 600,
};

export interface RunnerDependencies {
  pools: ShardPools;
  control: NodeControl;
  topology: () => Topology;
  /** A topology change, published in turn with the failover coordinator's (compare-and-set on the epoch). */
  publishChange: (change: (current: Topology) => Topology, send?: (topology: Topology) => Promise<void>) => Promise<Topology>;
  publishOperation: (record: OperationRecord) => Promise<void>;
  publishTopologyAndOperation: (topology: Topology, record: OperationRecord) => Promise<void>;
  readOperations: () => Promise<OperationRecord[]>;
  isLeader: () => boolean;
  /** Wins a new leader term when this leader's publisher lost its own; false when this monitor does not lead. */
  regainTerm: () => Promise<boolean>;
  log: (level: 'info' | 'warn' | 'error', message: string, extra?: object) => void;
  /** How long after a switch every service is taken to route by the new epoch (Kafka follow latency, with margin). */
  epochGraceMs: number;
  now?: () => number;
}

/** The monitor's private part of an operation record: the state machine plus what the steps need. */
interface RunnerRecord {
  state: OperationState;
  /** Nodes of an added shard: named by the operator, or provisioned (then set by the provision step). */
  nodes: NodeAddress[] | null;
  /** When the current batch switched (its epoch grace runs from here). */
  switchedAt: number | null;
}

/**
 * Runs the resharding operations of libs/resharding as the leading monitor: takes the
 * add-shard / drain-shard commands, persists every state on `cluster.operations` before
 * its step runs, performs each step (provision, copy, catch-up, fence, verify, switch,
 * clean-up, retire) with the slot mover's SQL, and feeds what it saw back into the pure
 * state machine. A new leader reads the newest records and resumes a running one.
 */
export class ReshardingRunner {
  private readonly sql = new SlotMoveRepository();
  private current: RunnerRecord | null = null;
  private known: OperationRecord[] = [];
  private running: Promise<void> | null = null;
  /** How long each step of the current fence took (logged with the switch: where a long write pause went). */
  private fenceSteps: string[] = [];

  constructor(private readonly deps: RunnerDependencies) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /**
   * Taking the lead: the newest record of every operation; a running one is resumed. Until
   * the records are read (Kafka may still be settling the dead leader's transaction), the
   * read is tried again every 2 s for as long as this monitor leads.
   */
  async resumeAfterLeadership(): Promise<void> {
    for (;;) {
      try {
        this.known = await this.deps.readOperations();
        break;
      } catch (error) {
        this.deps.log('warn', 'could not read resharding operations; trying again', { err: (error as Error).message });
        if (!this.deps.isLeader()) return;
        await sleep(2000);
        if (!this.deps.isLeader()) return;
      }
    }
    const open = this.known.find((record) => record.document.state === 'running' && record.record);
    if (!open || this.running) return;
    const saved = open.record as RunnerRecord;
    const { state } = resume(saved.state);
    this.current = { ...saved, state };
    this.deps.log('info', 'resuming resharding operation', { operation: state.id, phase: state.phase });
    await this.persist();
    this.loop();
  }

  async handleCommand(command: AddShardCommand | DrainShardCommand): Promise<void> {
    if (!this.deps.isLeader()) return;
    const topology = this.deps.topology();
    try {
      if (this.current && this.current.state.state === 'running') {
        throw new Refusal(
          'conflict',
          `operation ${this.current.state.id} (${this.current.state.type} ${this.current.state.shard}) is still running`,
          this.current.state.id,
        );
      }
      if (this.known.some((record) => record.document.id === command.operationId)) return;
      let nodes: NodeAddress[] | null = null;
      if (command.type === 'add-shard') {
        if (command.nodes) {
          const taken = new Set(topology.nodes.map((node) => node.name));
          const clash = command.nodes.find((node) => taken.has(node.name));
          if (clash) throw new Refusal('shard-exists', `node ${clash.name} is already in the topology`);
          nodes = command.nodes;
        } else if (!this.deps.control.canProvision) {
          throw new Refusal('unsupported', 'this node control cannot provision nodes: name them in the body of POST /api/cluster/shards ({"nodes": [...]})');
        }
      }
      // Rows per slot, estimated from each shard's statistics (the first record must be out within the gateway's wait).
      const rowCounts = new Map<number, number>();
      for (const shard of topology.shards) {
        const links = await this.sql.estimatedLinks(this.deps.pools.primary(shard.id)).catch(() => 0);
        const owned = topology.ring.slots.flatMap((owner, slot) => (owner === shard.id ? [slot] : []));
        for (const slot of owned) rowCounts.set(slot, Math.ceil(links / owned.length));
      }
      const highestIdEverUsed = Math.max(-1, ...topology.shards.map((shard) => shard.id), ...this.known.map((record) => record.document.shard));
      const state = startOperation({
        id: command.operationId,
        request: command.type === 'add-shard' ? { type: 'add-shard' } : { type: 'drain-shard', shard: command.shard },
        slots: topology.ring.slots,
        now: this.now(),
        rowCounts,
        highestIdEverUsed,
        options: RUNNER_MOVER_OPTIONS,
      });
      this.current = { state, nodes, switchedAt: null };
      try {
        await this.persist();
      } catch (error) {
        // A leader whose publisher was fenced (another monitor led for a moment) wins a new term and tries once more.
        this.deps.log('warn', 'could not persist the new operation; taking a new term', { operation: state.id, err: (error as Error).message });
        if (!(await this.deps.regainTerm())) {
          this.current = null;
          throw error;
        }
        await this.persist().catch((again: Error) => {
          this.current = null;
          throw again;
        });
      }
      this.deps.log('info', 'resharding operation started', { operation: state.id, type: state.type, shard: state.shard, batches: state.batches.length });
      this.loop();
    } catch (error) {
      const refusal =
        error instanceof Refusal
          ? error
          : error instanceof OperationRefused
            ? new Refusal(error.reason === 'id-reused' || error.reason === 'bad-map' ? 'bad-request' : error.reason, error.message, error.running)
            : new Refusal('bad-request', (error as Error).message);
      this.deps.log('warn', 'resharding request refused', { operation: command.operationId, reason: refusal.reason, err: refusal.message });
      const at = new Date(this.now()).toISOString();
      await this.deps
        .publishOperation({
          version: 1,
          document: {
            id: command.operationId,
            type: command.type,
            shard: command.type === 'drain-shard' ? command.shard : 0,
            state: 'failed',
            phase: 'failed',
            slots: { total: 0, moved: 0 },
            rows: { copied: 0, verified: 0 },
            maxWritePauseMs: 0,
            startedAt: at,
            finishedAt: at,
            error: refusal.message,
          },
          refused: { reason: refusal.reason, message: refusal.message, ...(refusal.running ? { running: refusal.running } : {}) },
          at,
        })
        .catch((publishError: Error) => this.deps.log('error', 'could not publish a refusal', { err: publishError.message }));
    }
  }

  private recordOf(runner: RunnerRecord): OperationRecord {
    return { version: 1, document: documentOf(runner.state), record: runner, at: new Date(this.now()).toISOString() };
  }

  private async persist(): Promise<void> {
    const record = this.recordOf(this.current!);
    await this.deps.publishOperation(record);
    this.known = [...this.known.filter((known) => known.document.id !== record.document.id), record];
  }

  private loop(): void {
    if (this.running) return;
    this.running = (async () => {
      operationRunning.set(1);
      try {
        while (this.current && this.current.state.state === 'running' && this.deps.isLeader()) {
          const step = stepOf(this.current.state);
          let observation: Observation;
          const stepStarted = this.now();
          try {
            observation = await this.perform(step);
            if (FENCE_WINDOW.has(step.kind)) this.fenceSteps.push(`${step.kind} ${this.now() - stepStarted} ms`);
            else if (step.kind !== 'catch-up') this.fenceSteps = [];
          } catch (error) {
            observation = { kind: 'step-failed', error: (error as Error).message };
            this.deps.log('warn', 'resharding step failed', { operation: this.current.state.id, step: step.kind, err: (error as Error).message });
          }
          const before = this.current.state;
          const transition = next(before, observation, this.now());
          this.current = { ...this.current, state: transition.state };
          if (observation.kind === 'copied' || observation.kind === 'caught-up' || observation.kind === 'final-caught-up') {
            rowsCopied.inc('rows' in observation ? observation.rows : observation.applied);
          }
          // The fenced steps run back to back without a Kafka transaction each: the write pause
          // is what the fence promises to keep short. Nothing is lost for recovery: a leader
          // that finds the record before the fence runs catch-up, fence and verify again (each
          // idempotent; a guard already fenced or moved stays so), and the switch's record is
          // published in the same transaction as its topology.
          const fencedOnly = transition.state.state === 'running' && FENCE_WINDOW.has(transition.state.phase);
          // A tick, or a retried step that changed no phase, changes nothing a successor needs.
          const unchanged =
            (observation.kind === 'tick' || observation.kind === 'step-failed') &&
            transition.state.phase === before.phase &&
            transition.state.state === before.state &&
            transition.state.current === before.current;
          try {
            if (!fencedOnly && !unchanged) await this.persist();
          } catch (error) {
            // Not persisted: the step is not run on a record nobody could resume; this leader has probably lost its term.
            this.deps.log('error', 'could not persist the resharding operation; pausing', { err: (error as Error).message });
            await sleep(1000);
            continue;
          }
          // While the slots' writes are held (fenced, switching, or lifting the fence) a failed
          // step is retried at once: idling there is write pause.
          if (observation.kind === 'step-failed') await sleep(holdsWrites(transition.state) ? 50 : 500);
          else if (observation.kind === 'tick') await sleep(100);
        }
        if (this.current && this.current.state.state !== 'running') {
          this.deps.log(this.current.state.state === 'done' ? 'info' : 'error', 'resharding operation ended', {
            operation: this.current.state.id,
            state: this.current.state.state,
            error: this.current.state.error,
            maxWritePauseMs: this.current.state.maxWritePauseMs,
          });
        }
      } finally {
        operationRunning.set(0);
        this.running = null;
      }
    })();
  }

  /** Runs one step; every step may be run again (after a crash, by the next leader) with the same result. */
  private async perform(step: Step): Promise<Observation> {
    const runner = this.current!;
    const operation = runner.state.id;
    const pools = this.deps.pools;
    switch (step.kind) {
      case 'provision': {
        const topology = this.deps.topology();
        if (!topology.shards.some((shard) => shard.id === step.shard)) {
          const nodes = runner.nodes ?? (await this.deps.control.provision(step.shard));
          runner.nodes = nodes;
          await this.deps.publishChange((current) => withAddedShard(current, step.shard, nodes));
        }
        const version = await this.sql.schemaVersion(pools.primary(step.shard));
        if (version < latestSchemaVersion) throw new Error(`shard ${step.shard}'s primary has schema version ${version}; apply the migrations first`);
        return { kind: 'provisioned' };
      }
      case 'copy': {
        const source = pools.primary(step.from);
        const target = pools.primary(step.to);
        let changesFrom: string | undefined;
        if (step.cursor === null) {
          // Capture first, then wait out every transaction that may have written without logging, then copy.
          await this.sql.setGuard(target, step.slots, 'incoming', operation);
          await this.sql.setGuard(source, step.slots, 'capture', operation);
          if (!(await this.sql.waitForOlderTransactions(source, 5000)))
            throw new Error(`shard ${step.from}: transactions older than the change capture still run`);
          changesFrom = await this.sql.changePosition(source);
        }
        const page = await this.sql.copyPage(source, target, step.slots, step.cursor, COPY_PAGE_ROWS);
        return { kind: 'copied', rows: page.rows, cursor: page.cursor, done: page.done, ...(changesFrom !== undefined ? { changesFrom } : {}) };
      }
      case 'catch-up': {
        const result = await this.sql.applyChanges(pools.primary(step.from), pools.primary(step.to), step.slots, step.changesFrom ?? '0', CHANGES_PER_PASS);
        return { kind: 'caught-up', applied: result.applied, pending: result.pending, changesFrom: result.position };
      }
      case 'fence': {
        const source = pools.primary(step.from);
        await this.sql.changeGuard(source, step.slots, 'capture', 'fenced');
        // A write that passed the guard before the fence has logged its change; it must commit (or fail) before the final catch-up reads the log.
        if (!(await this.sql.waitForOlderTransactions(source, Math.max(0, step.deadline - this.now()))))
          throw new Error('writes older than the fence still run');
        return { kind: 'fenced' };
      }
      case 'final-catch-up': {
        let applied = 0;
        let position = step.changesFrom ?? '0';
        for (;;) {
          const result = await this.sql.applyChanges(pools.primary(step.from), pools.primary(step.to), step.slots, position, CHANGES_PER_PASS);
          applied += result.applied;
          position = result.position;
          if (result.pending === 0 || this.now() > step.deadline) return { kind: 'final-caught-up', applied, pending: result.pending, changesFrom: position };
        }
      }
      case 'verify': {
        const [source, target] = await Promise.all([
          this.sql.checksums(pools.primary(step.from), step.slots),
          this.sql.checksums(pools.primary(step.to), step.slots),
        ]);
        return { kind: 'verified', source, target };
      }
      case 'switch': {
        const switchStarted = this.now();
        const source = pools.primary(step.from);
        const target = pools.primary(step.to);
        const held = await this.sql.changeGuard(source, step.slots, 'fenced', 'moved');
        if (held !== step.slots.length)
          return { kind: 'switch-refused', reason: `${step.slots.length - held} of the batch's slots are no longer fenced on shard ${step.from}` };
        try {
          await this.sql.copyClickOffsets(source, target, step.slots);
          await this.sql.copyFallbackClaims(source, target, step.slots);
          // Readers go to the target's replicas from the new epoch on: they must already hold every copied row.
          const lsn = await this.sql.currentLsn(target);
          // Only standbys connected to the target now: readers take a replica whose WAL receiver
          // does not stream as a last resort only, and one that is not connected (a killed old
          // primary still rewinding after a failover of the target) would hold the slots' writes
          // for the whole replay deadline on every batch.
          const connected = new Set((await NodeAdmin.streamingStandbys(target)).map((standby) => standby.name));
          const replicas = (this.deps.topology().shards.find((shard) => shard.id === step.to)?.replicas ?? []).filter((name) => connected.has(name));
          const replayDeadline = this.now() + 2000;
          await Promise.all(
            replicas.map(async (replica) => {
              while (this.now() < replayDeadline && !(await this.sql.replayedUpTo(pools.pool(replica), lsn).catch(() => true))) await sleep(5);
            }),
          );
        } catch (error) {
          // Nothing is recorded or published and nobody is routed to the target yet: rather than
          // hold the slots' writes until a target that died has failed over, the source takes
          // them back (moved -> fenced, then the fence is lifted) and the batch is tried again later.
          const restored = await this.sql.changeGuard(source, step.slots, 'moved', 'fenced').catch(() => -1);
          if (restored !== step.slots.length) throw error;
          return { kind: 'switch-refused', reason: `shard ${step.to} did not take the slots: ${(error as Error).message}` };
        }
        // From here the switch only rolls forward: every primary keeps the map it is written
        // under (for a stack restored from backups, with no Kafka history), then it is published.
        const mapEpoch = this.deps.topology().epoch + 1;
        await Promise.all(
          this.deps.topology().shards.map((shard) =>
            this.sql.saveSlotMap(pools.primary(shard.id), mapEpoch, step.map).catch((error: Error) => {
              if (shard.id === step.from || shard.id === step.to) throw error;
              this.deps.log('warn', 'could not record the slot map on a primary', { shard: shard.id, err: error.message });
            }),
          ),
        );
        await this.sql.clearGuard(target, step.slots, ['incoming']);
        const switchedAt = this.now();
        const topology = await this.deps.publishChange(
          (current) => withSlotMap(current, step.map),
          async (doc) => {
            const after = next(runner.state, { kind: 'switched', epoch: doc.epoch }, switchedAt);
            await this.deps.publishTopologyAndOperation(doc, this.recordOf({ ...runner, state: after.state, switchedAt }));
          },
        );
        runner.switchedAt = switchedAt;
        const fencedAt = runner.state.batches[step.batch].fencedAt ?? switchedAt;
        this.deps.log('info', 'slot batch switched', {
          operation,
          batch: step.batch,
          slots: step.slots.length,
          from: step.from,
          to: step.to,
          epoch: topology.epoch,
          writePauseMs: this.now() - fencedAt,
          steps: [...this.fenceSteps, `switch ${this.now() - switchStarted} ms (publish ${this.now() - switchedAt} ms)`],
        });
        this.fenceSteps = [];
        slotsMoved.inc(step.slots.length);
        writePause.set(this.now() - fencedAt);
        return { kind: 'switched', epoch: topology.epoch };
      }
      case 'await-epoch': {
        const since = runner.switchedAt ?? this.now();
        if (this.now() - since < this.deps.epochGraceMs) {
          await sleep(Math.min(200, this.deps.epochGraceMs - (this.now() - since)));
          return { kind: 'tick' };
        }
        return { kind: 'epoch-followed', epoch: Math.max(step.epoch, this.deps.topology().epoch), lagging: 0 };
      }
      case 'cleanup': {
        const deleted = await this.sql.deletePage(pools.primary(step.from), step.slots, CLEANUP_PAGE_ROWS);
        return { kind: 'cleaned', rows: deleted, done: deleted < CLEANUP_PAGE_ROWS };
      }
      case 'unfence': {
        await this.sql.changeGuard(pools.primary(step.from), step.slots, 'fenced', 'capture');
        return { kind: 'unfenced' };
      }
      case 'drop-copies': {
        const target = pools.primary(step.to);
        // The target's copies go (they were never routed to), then the source stops capturing.
        while ((await this.sql.deletePage(target, step.slots, CLEANUP_PAGE_ROWS)) >= CLEANUP_PAGE_ROWS);
        await this.sql.clearGuard(target, step.slots, ['incoming']);
        await this.sql.clearGuard(pools.primary(step.from), step.slots, ['capture', 'fenced']);
        return { kind: 'copies-dropped' };
      }
      case 'retire': {
        const topology = this.deps.topology();
        const shard = topology.shards.find((candidate) => candidate.id === step.shard);
        if (shard) {
          // The writer relays the outbox of listed shards only: what the drained shard still holds goes out first.
          const pending = await this.sql.outboxPending(pools.primary(step.shard));
          if (pending > 0) throw new Error(`shard ${step.shard} still has ${pending} events to relay`);
          await this.deps.publishChange((current) => withoutShard(current, step.shard));
          await this.deps.control.retire(step.shard, [shard.primary, ...shard.replicas]);
        } else if (runner.nodes && runner.state.type === 'add-shard') {
          await this.deps.control
            .retire(
              step.shard,
              runner.nodes.map((node) => node.name),
            )
            .catch(() => undefined);
        }
        return { kind: 'retired' };
      }
      case 'none':
        return { kind: 'tick' };
    }
  }
}

type RefusalReason = NonNullable<OperationRecord['refused']>['reason'];

/** A command the runner turns down; the gateway answers it with the status of its reason. */
class Refusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
    readonly running?: string,
  ) {
    super(message);
  }
}

function holdsWrites(state: OperationState): boolean {
  return state.state === 'running' && (FENCE_WINDOW.has(state.phase) || state.phase === 'unfence');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
