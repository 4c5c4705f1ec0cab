import { podName } from './kubernetes-node-control';
import { SqlOnlyNodeControl } from './sql-only-node-control';

describe('node control', () => {
  it('finds a pod by the first DNS label of its host', () => {
    expect(podName('pg-s0-1.pg-s0')).toBe('pg-s0-1');
    expect(podName('pg-s3-0.pg-s3.shortener.svc.cluster.local')).toBe('pg-s3-0');
  });

  it('fences by SQL when it can, and says so (rejects) when the node cannot be reached', async () => {
    const readOnly: string[] = [];
    const control = new SqlOnlyNodeControl(
      async (node) => {
        if (node === 'dead') throw new Error('ECONNREFUSED');
        readOnly.push(node);
      },
      () => undefined,
    );
    await control.fence('s0n0');
    await expect(control.fence('dead')).rejects.toThrow(/cannot be fenced by SQL: ECONNREFUSED/);
    expect(readOnly).toEqual(['s0n0']);
    // A replica found accepting writes is made read-only before its entrypoint rejoins it.
    await control.rejoin('s0n1', { name: 's0n0', host: 'h', port: 1 });
    expect(readOnly).toEqual(['s0n0', 's0n1']);
  });

  it('cannot provision a shard under compose: the operator names the nodes; retiring only logs', async () => {
    const logged: string[] = [];
    const control = new SqlOnlyNodeControl(
      async () => undefined,
      (message) => void logged.push(message),
    );
    expect(control.canProvision).toBe(false);
    await expect(control.provision()).rejects.toThrow('node control sql cannot provision nodes: name them in the body of POST /api/cluster/shards');
    await control.retire(4, ['s4n0', 's4n1']);
    expect(logged).toEqual(['shard retired: its containers are left to the operator to stop']);
  });
});
