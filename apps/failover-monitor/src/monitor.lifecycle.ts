import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { MonitorEnvironment } from '@shortener/config';
import { LeaderElection, readLatestTopology, TopologyPublisher, type ClusterView } from '@shortener/events';
import { ReadinessRegistry } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { PinoLogger } from 'nestjs-pino';
import { FailoverCoordinator } from './failover-coordinator';
import { WalArchiveWatch } from './wal-archive-watch';
import type { NodeControl } from './node-control';
import { CLUSTER_VIEW, KAFKA, MONITOR_CONFIG, NODE_CONTROL } from './monitor.constants';

@Injectable()
export class MonitorLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly publisher: TopologyPublisher;
  private readonly election: LeaderElection;
  private readonly coordinator: FailoverCoordinator;
  private readonly walArchive: WalArchiveWatch;
  private leading = false;

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
      (command) => this.coordinator.handleCommand(command),
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
    this.readiness.add('kafka-group', async () => this.election.isLeader() || this.cluster.hasPublishedTopology);
  }

  async onApplicationShutdown(): Promise<void> {
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
    } catch (error) {
      this.leading = false;
      this.logger.error({ err: (error as Error).message }, 'could not take the lead; retrying');
      setTimeout(() => void (this.election.isLeader() && this.onLeadership(true)), 2000).unref();
    }
  }
}
