import { podName } from './kubernetes-node-control';
import { SqlOnlyNodeControl } from './sql-only-node-control';

describe('node control', () => {
  it('finds a pod by the first DNS label of its host', () => {
    expect(podName('pg-s0-1.pg-s0')).toBe('pg-s0-1');
    expect(podName('pg-s3-0.pg-s3.shortener.svc.cluster.local')).toBe('pg-s3-0');
  });

  it('fences by SQL when it can, and never throws when the node is gone', async () => {
    const readOnly: string[] = [];
    const notes: string[] = [];
    const control = new SqlOnlyNodeControl(
      async (node) => {
        if (node === 'dead') throw new Error('ECONNREFUSED');
        readOnly.push(node);
      },
      (message) => notes.push(message),
    );
    await control.fence('s0n0');
    await control.fence('dead');
    expect(readOnly).toEqual(['s0n0']);
    expect(notes).toEqual([expect.stringMatching(/entrypoint/)]);
  });
});
