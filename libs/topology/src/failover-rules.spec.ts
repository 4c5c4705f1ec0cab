import { chooseReplicaToPromote, FailureDetector } from './failover-rules';

describe('chooseReplicaToPromote', () => {
  it('takes the replica with the most WAL received', () => {
    expect(
      chooseReplicaToPromote([
        { name: 'a', reachable: true, receivedLsn: 100n, priority: 0 },
        { name: 'b', reachable: true, receivedLsn: 200n, priority: 1 },
      ]),
    ).toBe('b');
  });

  it('breaks ties by priority and skips unreachable replicas', () => {
    expect(
      chooseReplicaToPromote([
        { name: 'a', reachable: true, receivedLsn: 100n, priority: 1 },
        { name: 'b', reachable: true, receivedLsn: 100n, priority: 0 },
        { name: 'c', reachable: false, receivedLsn: 900n, priority: 0 },
      ]),
    ).toBe('b');
    expect(chooseReplicaToPromote([{ name: 'c', reachable: false, receivedLsn: 1n, priority: 0 }])).toBeNull();
    expect(chooseReplicaToPromote([])).toBeNull();
  });
});

describe('FailureDetector', () => {
  it('declares a node down after the threshold of consecutive failures only', () => {
    const detector = new FailureDetector(3);
    detector.record('p', false, 1000);
    detector.record('p', false, 2000);
    expect(detector.isDown('p')).toBe(false);
    detector.record('p', true, 3000);
    detector.record('p', false, 4000);
    detector.record('p', false, 5000);
    expect(detector.isDown('p')).toBe(false);
    detector.record('p', false, 6000);
    expect(detector.isDown('p')).toBe(true);
    expect(detector.failingSince('p')).toBe(4000);
    detector.forget('p');
    expect(detector.isDown('p')).toBe(false);
  });
});
