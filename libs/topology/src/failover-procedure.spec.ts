import { ModelCluster, modelPorts } from './failover-fakes';
import { runFailover, runSwitchover } from './failover-procedure';

function crashPrimary(cluster: ModelCluster): void {
  Object.assign(cluster.node('n0'), { alive: false, reachable: false });
}

describe('runFailover', () => {
  it('fences, promotes the best replica, re-points the other and publishes epoch + 1 under its term', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    cluster.node('n2').walLsn = 120n;
    crashPrimary(cluster);
    const clock = { now: 50_000 };
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1, clock });
    const outcome = await runFailover(ports, 0, 'primary down', 46_500);
    expect(trace).toEqual(['fence n0', 'promote n2', 'configure n2', 'repoint n1->n2', 'publish e2 n2']);
    expect(outcome).toMatchObject({ outcome: 'published', from: 'n0', to: 'n2', resumed: false });
    expect(cluster.latest).toMatchObject({ epoch: 2, term: 1, shards: [{ primary: 'n2', replicas: ['n1', 'n0'] }] });
    expect(cluster.latest.failovers).toEqual([
      { shard: 0, from: 'n0', to: 'n2', reason: 'primary down', durationMs: 3500, at: new Date(50_000).toISOString() },
    ]);
  });

  it('after a failed publish, the next attempt publishes the promoted replica instead of promoting another', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    crashPrimary(cluster);
    let failPublish = true;
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1, failNextPublish: () => failPublish });
    await expect(runFailover(ports, 0, 'down', 0)).rejects.toThrow(/timed out/);
    expect(cluster.promotions).toEqual([{ node: 'n1', by: 'a' }]);
    expect(cluster.latest.epoch).toBe(1);
    // n1 promoted; now n2 has more WAL than n1 (it never will in reality, but the rule must not care).
    cluster.node('n2').walLsn = 999n;
    failPublish = false;
    const outcome = await runFailover(ports, 0, 'down', 0);
    expect(outcome).toMatchObject({ outcome: 'published', to: 'n1', resumed: true });
    expect(cluster.promotions).toHaveLength(1);
    expect(trace.filter((step) => step.startsWith('promote'))).toEqual(['promote n1']);
  });

  it('a new leader resumes what a dead leader left after its promotion', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    crashPrimary(cluster);
    let aLeads = true;
    let steps = 0;
    // Leader a "dies" right after its promotion: from then on it is no longer leading.
    const a = modelPorts(cluster, { monitor: 'a', term: 1, leading: () => aLeads, pause: async () => void (++steps === 3 && (aLeads = false)) });
    const first = await runFailover(a.ports, 0, 'down', 0);
    expect(first.outcome).toBe('not-leader');
    expect(cluster.promotions).toHaveLength(1);
    const b = modelPorts(cluster, { monitor: 'b', term: cluster.claimTerm() });
    const second = await runFailover(b.ports, 0, 'down', 0);
    expect(second).toMatchObject({ outcome: 'published', to: cluster.promotions[0].node, resumed: true });
    expect(cluster.latest.term).toBe(2);
    expect(cluster.promotions).toHaveLength(1);
  });

  it('checks leadership before every irreversible step: losing it at any point stops the procedure there', async () => {
    for (let loseAt = 1; loseAt <= 5; loseAt++) {
      const cluster = new ModelCluster('quorum', 'certain');
      crashPrimary(cluster);
      let checks = 0;
      const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1, leading: () => ++checks < loseAt });
      const outcome = await runFailover(ports, 0, 'down', 0);
      if (loseAt <= 4) expect(outcome.outcome).toBe('not-leader');
      // The checks come before the decision, the fence, the promotion and the publish.
      const expected = [
        [],
        [],
        ['fence n0'],
        ['fence n0', 'promote n1', 'configure n1', 'repoint n2->n1'],
        ['fence n0', 'promote n1', 'configure n1', 'repoint n2->n1', 'publish e2 n1'],
      ][loseAt - 1];
      expect(trace).toEqual(expected);
    }
  });

  it('a deposed leader whose producer was fenced cannot publish over the new term', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    crashPrimary(cluster);
    const { ports } = modelPorts(cluster, { monitor: 'a', term: 1, pause: async () => void (cluster.highestTerm = 2) });
    await expect(runFailover(ports, 0, 'down', 0)).rejects.toThrow(/fenced/);
    expect(cluster.latest.epoch).toBe(1);
  });

  it('does not publish over a newer topology (compare-and-set on the epoch)', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    crashPrimary(cluster);
    let injected = false;
    const { ports } = modelPorts(cluster, {
      monitor: 'a',
      term: 2,
      pause: async () => {
        if (!injected && cluster.promotions.length === 1) {
          injected = true;
          cluster.log.push({ ...cluster.latest, epoch: 2, term: 2 });
        }
      },
    });
    expect(await runFailover(ports, 0, 'down', 0)).toEqual({ outcome: 'stale-topology', promoted: 'n1' });
    expect(cluster.log).toHaveLength(2);
  });

  it('async mode: an old primary that cannot be fenced keeps the shard read-only, and the failure is reported', async () => {
    const cluster = new ModelCluster('async', 'sql');
    crashPrimary(cluster);
    const { ports, trace, fenceFailures, logs } = modelPorts(cluster, { monitor: 'a', term: 1 });
    const outcome = await runFailover(ports, 0, 'down', 0);
    expect(outcome).toMatchObject({ outcome: 'held-read-only', reason: expect.stringMatching(/async/) });
    expect(fenceFailures).toEqual(['n0']);
    expect(trace).toEqual(['fence n0']);
    expect(cluster.promotions).toEqual([]);
    expect(logs.some((log) => log.level === 'error')).toBe(true);
  });

  it('quorum mode without a fence: promotes once no standby feeds the old primary, re-pointing the others first', async () => {
    const cluster = new ModelCluster('quorum', 'sql');
    crashPrimary(cluster);
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1 });
    expect(await runFailover(ports, 0, 'down', 0)).toMatchObject({ outcome: 'published', to: 'n1' });
    expect(trace).toEqual(['fence n0', 'repoint n2->n1', 'promote n1', 'configure n1', 'publish e2 n1']);
  });

  it('quorum mode without a fence: a primary cut off from the monitors is replaced once its standbys are detached from it', async () => {
    const cluster = new ModelCluster('quorum', 'sql');
    cluster.node('n0').reachable = false;
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1 });
    expect(cluster.acknowledges(cluster.node('n0'))).toBe(true);
    expect(await runFailover(ports, 0, 'down', 0)).toMatchObject({ outcome: 'published', to: 'n1' });
    // n2 streamed from n0: re-pointed at n1 (its slot made there first) before anything was promoted.
    expect(trace).toEqual(['fence n0', 'configure n1', 'repoint n2->n1', 'repoint n2->n1', 'promote n1', 'configure n1', 'publish e2 n1']);
    // The old primary still runs, unfenced, but nothing feeds it: it can acknowledge no write.
    expect(cluster.acknowledges(cluster.node('n0'))).toBe(false);
  });

  it('quorum mode without a fence: a standby that still streams from the old primary after being re-pointed holds the promotion', async () => {
    const cluster = new ModelCluster('quorum', 'sql');
    cluster.node('n0').reachable = false;
    const { ports } = modelPorts(cluster, { monitor: 'a', term: 1 });
    // A receiver that has not yet noticed the re-pointing (PostgreSQL restarts it shortly).
    ports.repoint = async () => undefined;
    expect(await runFailover(ports, 0, 'down', 0)).toMatchObject({
      outcome: 'held-read-only',
      reason: expect.stringMatching(/n2 may still replicate synchronously/),
    });
    expect(cluster.promotions).toEqual([]);
  });

  it('quorum mode without a fence: a replica that does not answer holds the promotion (it may feed the old primary)', async () => {
    const cluster = new ModelCluster('quorum', 'sql');
    cluster.node('n0').reachable = false;
    cluster.node('n2').reachable = false;
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1 });
    expect(await runFailover(ports, 0, 'down', 0)).toMatchObject({ outcome: 'held-read-only', reason: expect.stringMatching(/does not answer/) });
    expect(cluster.promotions).toEqual([]);
    expect(trace).toEqual(['fence n0']);
  });

  it('reports a shard with no replica to promote', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    for (const name of ['n0', 'n1', 'n2']) cluster.node(name).reachable = false;
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1 });
    expect(await runFailover(ports, 0, 'down', 0)).toEqual({ outcome: 'no-candidate' });
    expect(trace).toEqual([]);
  });
});

describe('runSwitchover', () => {
  it('hands over: read-only, clean stop, promotion once the candidate has all WAL, publish', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1 });
    expect(await runSwitchover(ports, 0, { replayTimeoutMs: 100 })).toMatchObject({ outcome: 'published', from: 'n0', to: 'n1' });
    expect(trace).toEqual(['read-only n0 true', 'stop n0', 'promote n1', 'configure n1', 'repoint n2->n1', 'publish e2 n1']);
  });

  it('a failure before the promotion makes the old primary writable again', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    cluster.node('n0').walLsn = 500n; // the replicas never catch up
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1 });
    await expect(runSwitchover(ports, 0, { replayTimeoutMs: 100 })).rejects.toThrow(/behind/);
    expect(trace).toEqual(['read-only n0 true', 'stop n0', 'start n0', 'read-only n0 false']);
    expect(cluster.node('n0')).toMatchObject({ alive: true, readOnly: false, inRecovery: false });
  });

  it('a failure after the promotion never restarts the old primary writable: the failover rounds finish the hand-over', async () => {
    const cluster = new ModelCluster('quorum', 'certain');
    let failPublish = true;
    const { ports, trace } = modelPorts(cluster, { monitor: 'a', term: 1, failNextPublish: () => failPublish });
    await expect(runSwitchover(ports, 0, { replayTimeoutMs: 100 })).rejects.toThrow(/timed out/);
    expect(trace).not.toContain('start n0');
    expect(trace).not.toContain('read-only n0 false');
    expect(cluster.node('n0')).toMatchObject({ alive: false, readOnly: true });
    // The next round sees the stopped primary as down and resumes the promoted candidate.
    failPublish = false;
    expect(await runFailover(ports, 0, 'down', 0)).toMatchObject({ outcome: 'published', to: 'n1', resumed: true });
    expect(cluster.promotions).toHaveLength(1);
  });
});
