// Apache Kafka of the local stack: one broker in KRaft combined mode (broker+controller),
// jars resolved from Maven Central through tools/kafka/pom.xml, run with the machine's Java.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, KAFKA_TOPICS } from './config.mjs';
import { Supervised } from './supervisor.mjs';
import { canConnect, log, run, waitFor } from './util.mjs';

const KAFKA_DIR = join(REPO_ROOT, 'tools', 'kafka');
const POM = join(KAFKA_DIR, 'pom.xml');

/**
 * The broker's class path. Resolved once with Maven into a cache directory keyed by the
 * pom's content (KAFKA_LIB_DIR overrides it); offline (`mvn -o`) when ~/.m2 already has
 * everything, online otherwise. Later starts only list the cached jars.
 */
export async function kafkaClasspath(stackDir) {
  const pom = readFileSync(POM);
  const key = createHash('sha256').update(pom).digest('hex').slice(0, 12);
  const libDir = process.env.KAFKA_LIB_DIR || join(homedir(), '.m2', 'shortener-kafka', key);
  const marker = join(libDir, '.complete');
  if (!existsSync(marker)) {
    const partial = `${libDir}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    const args = ['-B', '-q', '-f', POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${partial}`];
    log('info', 'resolving Kafka jars with Maven', { libDir }, { important: true });
    // tagged so that the launcher's final sweep finds a Maven left running
    const env = { ...process.env, SHORTENER_STACK_DIR: stackDir ?? '' };
    const offline = await run('mvn', ['-o', ...args], { allowFail: true, cwd: KAFKA_DIR, env });
    if (offline.code !== 0) {
      rmSync(partial, { recursive: true, force: true });
      await run('mvn', args, { cwd: KAFKA_DIR, env, timeoutMs: 900_000 });
    }
    writeFileSync(join(partial, '.complete'), `${new Date().toISOString()}\n`);
    mkdirSync(join(libDir, '..'), { recursive: true });
    if (existsSync(marker)) {
      rmSync(partial, { recursive: true, force: true }); // another launcher was quicker
    } else {
      rmSync(libDir, { recursive: true, force: true });
      try {
        renameSync(partial, libDir);
      } catch (error) {
        rmSync(partial, { recursive: true, force: true });
        if (!existsSync(marker)) throw error;
      }
    }
  }
  const jars = readdirSync(libDir).filter((f) => f.endsWith('.jar'));
  if (!jars.some((f) => f.startsWith('kafka_2.13-'))) throw new Error(`no kafka_2.13 jar in ${libDir}; remove the directory and start again`);
  return jars.map((f) => join(libDir, f)).join(':');
}

function serverProperties(inventory) {
  const [host, port] = inventory.kafka.brokers[0].split(':');
  const controller = inventory.kafka.controller;
  return [
    '# Written by tools/stack/kafka.mjs at every start of the local stack.',
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@${controller}`,
    `listeners=PLAINTEXT://${host}:${port},CONTROLLER://${controller}`,
    `advertised.listeners=PLAINTEXT://${host}:${port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    `log.dirs=${inventory.kafka.dataDir}`,
    'num.partitions=6',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'transaction.state.log.num.partitions=10',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    // the failover monitors' leadership lease is a 4 s group session (libs/events leader-election)
    'group.min.session.timeout.ms=2000',
    'auto.create.topics.enable=true',
    'num.network.threads=2',
    'num.io.threads=4',
    'background.threads=4',
    'num.recovery.threads.per.data.dir=1',
    'log.cleaner.threads=1',
    'log.cleaner.dedupe.buffer.size=16777216',
    'log.retention.hours=168',
    'log.segment.bytes=67108864',
    'log.retention.check.interval.ms=300000',
    '',
  ].join('\n');
}

export async function kafkaProcess(inventory, baseEnv) {
  const dir = join(inventory.stackDir, 'kafka');
  mkdirSync(inventory.kafka.dataDir, { recursive: true });
  const classpath = await kafkaClasspath(inventory.stackDir);
  const propsFile = join(dir, 'server.properties');
  writeFileSync(propsFile, serverProperties(inventory));
  const clusterIdFile = join(dir, 'cluster-id');
  if (!existsSync(clusterIdFile)) writeFileSync(clusterIdFile, `${randomBytes(16).toString('base64url')}\n`);
  const clusterId = readFileSync(clusterIdFile, 'utf8').trim();
  const jvm = [
    '-Xms256m',
    '-Xmx512m',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${join(KAFKA_DIR, 'log4j2.properties')}`,
    `-Dkafka.logs.dir=${inventory.logs}`,
  ];
  if (!existsSync(join(inventory.kafka.dataDir, 'meta.properties'))) {
    log('info', 'formatting Kafka storage', { clusterId });
    await run('java', [...jvm, '-cp', classpath, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', propsFile, '--ignore-formatted'], {
      cwd: dir,
      env: { ...baseEnv, SHORTENER_STACK_DIR: inventory.stackDir },
      timeoutMs: 600_000,
    });
  }
  return new Supervised({
    name: 'kafka',
    command: 'java',
    args: [...jvm, '-cp', classpath, 'kafka.Kafka', propsFile],
    env: baseEnv,
    cwd: dir,
    stackDir: inventory.stackDir,
    stopTimeoutMs: 45_000,
  });
}

/** Waits for the broker and creates the stack's topics if they are missing. */
export async function ensureTopics(inventory, timeoutMs = Number(process.env.STACK_KAFKA_TIMEOUT_MS || 300_000)) {
  const [host, port] = inventory.kafka.brokers[0].split(':');
  await waitFor('kafka listener', () => canConnect(host, Number(port)), { timeoutMs });
  const { Kafka, logLevel } = await import('kafkajs');
  const kafka = new Kafka({ clientId: 'stack-launcher', brokers: inventory.kafka.brokers, logLevel: logLevel.NOTHING, retry: { retries: 8 } });
  const admin = kafka.admin();
  await waitFor(
    'kafka admin connection',
    async () => {
      await admin.connect();
      return true;
    },
    { timeoutMs, intervalMs: 1000 },
  );
  try {
    await waitFor(
      'kafka topics',
      async () => {
        const existing = new Set(await admin.listTopics());
        const missing = KAFKA_TOPICS.filter((t) => !existing.has(t.topic));
        if (missing.length > 0) {
          await admin.createTopics({ topics: missing.map((t) => ({ ...t, replicationFactor: 1 })), waitForLeaders: true }).catch((error) => {
            if (!/already exists/i.test(String(error?.message))) throw error;
          });
        }
        const metadata = await admin.fetchTopicMetadata({ topics: KAFKA_TOPICS.map((t) => t.topic) });
        return metadata.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
      },
      { timeoutMs, intervalMs: 1000 },
    );
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
