import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { MonitorEnvironment } from '@shortener/config';
import { LeaderElection, readAllOperations, readLatestTopology, TopologyPublisher, type ClusterView } from '@shortener/events';
import { ReadinessRegistry } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { PinoLogger } from 'nestjs-pino';
import { FailoverCoordinator } from './failover-coordinator';
import { WalArchiveWatch } from './wal-archive-watch';
import { ReshardingRunner } from './resharding-runner';
import type { NodeControl } from './node-control';
import { CLUSTER_VIEW, KAFKA, MONITOR_CONFIG, NODE_CONTROL } from './monitor.constants';

@Injectable()
export class MonitorLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly publisher: TopologyPublisher;
  private readonly election: LeaderElection;
  private readonly coordinator: FailoverCoordinator;
  private readonly walArchive: WalArchiveWatch;
  private readonly resharding: ReshardingRunner;
  private leading = false;
  private termWatch: NodeJS.Timeout | null = null;
  private regaining = false;

  constructor(
    @Inject(MONITOR_CONFIG) private readonly config: MonitorEnvironment,
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    @Inject(KAFKA) private readonly kafka: Kafka,
    @Inject(NODE_CONTROL) control: NodeControl,
    private readonly readiness: ReadinessRegistry,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('failover-monitor');
    this.publisher = new TopologyPublisher(kafka, config.MONITOR_ID);
    this.election = new LeaderElection(
      kafka,
      (command) => (command.type === 'switchover' ? this.coordinator.handleCommand(command) : this.resharding.handleCommand(command)),
      (leader) => void this.onLeadership(leader),
    );
    this.coordinator = new FailoverCoordinator({
      pools: cluster.pools,
      control,
      publish: (topology) => this.publisher.publish(topology),
      isLeader: () => this.leading && this.election.isLeader(),
      term: () => this.publisher.term,
      log: (level, message, extra) => this.logger[level]({ monitor: config.MONITOR_ID, ...extra }, message),
    });
    this.resharding = new ReshardingRunner({
      pools: cluster.pools,
      control,
      topology: () => this.coordinator.topology,
      publishChange: (change, send) => this.coordinator.publishChange(change, send),
      publishOperation: (record) => this.publisher.publishOperation(record),
      publishTopologyAndOperation: (topology, record) => this.publisher.publishTopologyAndOperation(topology, record),
      readOperations: () => readAllOperations(kafka),
      isLeader: () => this.leading && this.election.isLeader(),
      regainTerm: async () => {
        if (!this.leading || !this.election.isLeader()) return false;
        if (this.publisher.term === null) await this.onLeadership(true);
        return this.publisher.term !== null;
      },
      log: (level, message, extra) => this.logger[level]({ monitor: config.MONITOR_ID, ...extra }, message),
      epochGraceMs: config.RESHARD_EPOCH_GRACE_MS ?? 1500,
    });
    this.walArchive = new WalArchiveWatch({
      pools: cluster.pools,
      topology: () => this.coordinator.topology,
      isLeader: () => this.leading && this.election.isLeader(),
      log: (level, message, extra) => this.logger[level]({ monitor: config.MONITOR_ID, ...extra }, message),
    });
  }

  onApplicationBootstrap(): void {
    this.cluster.start();
    this.coordinator.start();
    this.walArchive.start();
    // Never rejects: the group membership retries on its own while Kafka is away.
    void this.election.start();
    // A publish that failed (Kafka refused or never answered) stops the publisher and so
    // this leader's term; while the group still makes this monitor the leader it wins a
    // new term instead of leading with nothing to publish with.
    this.termWatch = setInterval(() => {
      if (this.leading && this.election.isLeader() && this.publisher.term === null && !this.regaining) {
        this.regaining = true;
        this.logger.warn({ monitor: this.config.MONITOR_ID }, 'publisher lost its term; taking the lead again');
        void this.onLeadership(true).finally(() => (this.regaining = false));
      }
    }, 2000);
    this.termWatch.unref();
    this.readiness.add('kafka-group', async () => this.election.isLeader() || this.cluster.hasPublishedTopology);
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.termWatch) clearInterval(this.termWatch);
    this.coordinator.stop();
    this.walArchive.stop();
    await this.election.stop();
    await this.publisher.stop();
    await this.cluster.stop();
  }

  /**
   * Taking the lead: initialise the shared transactional producer at once (fencing any
   * older leader's) and win a term, then read the newest topology (everything a deposed
   * leader committed is in it, nothing more can come from it), and only then act.
   */
  private async onLeadership(leader: boolean): Promise<void> {
    this.logger.info({ monitor: this.config.MONITOR_ID, leader }, leader ? 'leading' : 'following');
    if (!leader) {
      this.leading = false;
      await this.publisher.stop();
      return;
    }
    try {
      const term = await this.publisher.start();
      if (!this.election.isLeader()) {
        await this.publisher.stop();
        return;
      }
      const latest = await readLatestTopology(this.kafka);
      if (latest) this.cluster.pools.apply(latest);
      this.leading = true;
      if (!latest) {
        const topology = await this.coordinator.publishInitialTopology(this.config.SHARD_NODES);
        this.logger.info({ epoch: topology.epoch, term }, 'published the first topology');
      }
      this.logger.info({ monitor: this.config.MONITOR_ID, term, epoch: latest?.epoch }, 'leader term won');
      void this.resharding.resumeAfterLeadership().catch((error: Error) => this.logger.error({ err: error.message }, 'could not resume resharding'));
    } catch (error) {
      this.leading = false;
      this.logger.error({ err: (error as Error).message }, 'could not take the lead; retrying');
      setTimeout(() => void (this.election.isLeader() && this.onLeadership(true)), 2000).unref();
    }
  }
}
