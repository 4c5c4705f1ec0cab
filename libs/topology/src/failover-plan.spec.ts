import { decideFailover, mayRestoreOldPrimary, primaryServes, promotionGate, type NodeView } from './failover-plan';
import type { ReplicationMode } from './topology';

const shard = { id: 0, primary: 'n0', replicas: ['n1', 'n2'] };
const standby = (lsn: bigint, walReceiver: string | null = 'none', receivingFrom: string | null = null): NodeView => ({
  inRecovery: true,
  walLsn: lsn,
  receivedLsn: lsn,
  walReceiver,
  receivingFrom,
  readOnly: false,
});
const promoted = (lsn: bigint): NodeView => ({ inRecovery: false, walLsn: lsn, receivedLsn: null, walReceiver: null, receivingFrom: null, readOnly: false });

describe('decideFailover', () => {
  it('promotes the replica with most WAL received', () => {
    expect(
      decideFailover(
        shard,
        new Map([
          ['n1', standby(10n)],
          ['n2', standby(20n)],
        ]),
      ),
    ).toEqual({ action: 'promote', candidate: 'n2' });
  });

  it('resumes a replica that an earlier attempt promoted instead of promoting a second one', () => {
    // n1 has less WAL than n2 but is already out of recovery: it is the one to publish.
    expect(
      decideFailover(
        shard,
        new Map([
          ['n1', promoted(10n)],
          ['n2', standby(20n)],
        ]),
      ),
    ).toEqual({ action: 'resume', node: 'n1' });
    expect(
      decideFailover(
        shard,
        new Map([
          ['n1', promoted(10n)],
          ['n2', promoted(30n)],
        ]),
      ),
    ).toEqual({ action: 'resume', node: 'n2' });
  });

  it('has no candidate when no replica answers', () => {
    expect(
      decideFailover(
        shard,
        new Map([
          ['n1', null],
          ['n2', null],
        ]),
      ),
    ).toEqual({ action: 'no-candidate' });
    expect(decideFailover(shard, new Map())).toEqual({ action: 'no-candidate' });
  });
});

describe('promotionGate', () => {
  const views: Record<string, NodeView | null> = {
    idle: standby(10n, 'none'),
    streaming: standby(10n, 'streaming', 'n0'),
    fromCandidate: standby(10n, 'streaming', 'n1'),
    starting: standby(10n, 'starting'),
    unknown: standby(10n, null),
    down: null,
    promoted: promoted(10n),
  };
  const kinds = Object.keys(views);

  // Every combination of mode, fence outcome and the two replicas' states.
  for (const mode of ['quorum', 'async'] as ReplicationMode[]) {
    for (const fenced of [true, false]) {
      for (const candidateKind of kinds) {
        for (const otherKind of kinds) {
          const observed = new Map([
            ['n1', views[candidateKind]],
            ['n2', views[otherKind]],
          ]);
          const gate = promotionGate({ mode, fenced, shard, observed, candidate: 'n1' });
          const expected = fenced ? true : mode === 'quorum' && candidateKind !== 'down' && (otherKind === 'idle' || otherKind === 'fromCandidate');
          it(`${mode}, ${fenced ? 'fenced' : 'not fenced'}, candidate ${candidateKind}, other ${otherKind}: ${expected ? 'promotes' : 'holds'}`, () => {
            expect(gate.allowed).toBe(expected);
            if (!gate.allowed) expect(gate.readOnly).toBe(true);
            if (gate.allowed) expect(gate.via).toBe(fenced ? 'fenced' : 'no-synchronous-standby');
          });
        }
      }
    }
  }
});

describe('primaryServes', () => {
  it('counts a primary as serving only when it answers, is out of recovery and not read-only', () => {
    expect(primaryServes(promoted(1n))).toBe(true);
    expect(primaryServes({ ...promoted(1n), readOnly: true })).toBe(false);
    expect(primaryServes(standby(1n))).toBe(false);
    expect(primaryServes(null)).toBe(false);
  });
});

describe('mayRestoreOldPrimary', () => {
  it('makes the old primary writable again only while the candidate is seen in recovery', () => {
    expect(mayRestoreOldPrimary(standby(1n))).toBe(true);
    expect(mayRestoreOldPrimary(promoted(1n))).toBe(false);
    expect(mayRestoreOldPrimary(null)).toBe(false);
    expect(mayRestoreOldPrimary(undefined)).toBe(false);
  });
});
