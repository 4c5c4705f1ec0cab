import { EventEmitter } from 'node:events';
import { reconnectWhenStuck } from './link-cache';

// The policy alone, on a stand-in with the cluster client's status, events and calls.
describe('reconnectWhenStuck', () => {
  class FakeCluster extends EventEmitter {
    status = 'connecting';
    disconnect = jest.fn((reconnect?: boolean) => {
      void reconnect;
      this.status = 'disconnecting';
    });
    connect = jest.fn(async () => {
      this.status = 'connecting';
    });
  }

  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('forces a reconnect of a client that stays not ready, and says so once per attempt', () => {
    const cluster = new FakeCluster();
    const stuck = jest.fn();
    const timer = reconnectWhenStuck(cluster as never, stuck, { stuckAfterMs: 15_000, checkEveryMs: 5000 });
    jest.advanceTimersByTime(10_000);
    expect(cluster.disconnect).not.toHaveBeenCalled();
    jest.advanceTimersByTime(5000);
    expect(stuck).toHaveBeenCalledWith('connecting');
    expect(cluster.disconnect).toHaveBeenCalledWith(true);
    // disconnect(true) alone left it disconnecting: connect is called a second later.
    jest.advanceTimersByTime(1000);
    expect(cluster.connect).toHaveBeenCalledTimes(1);
    jest.advanceTimersByTime(10_000);
    expect(cluster.disconnect).toHaveBeenCalledTimes(1);
    clearInterval(timer);
  });

  it('leaves a client alone that became ready in time, and one closed on purpose', () => {
    const cluster = new FakeCluster();
    const timer = reconnectWhenStuck(cluster as never, undefined, { stuckAfterMs: 15_000, checkEveryMs: 5000 });
    jest.advanceTimersByTime(5000);
    cluster.status = 'ready';
    cluster.emit('ready');
    jest.advanceTimersByTime(60_000);
    expect(cluster.disconnect).not.toHaveBeenCalled();
    cluster.status = 'end';
    jest.advanceTimersByTime(60_000);
    expect(cluster.disconnect).not.toHaveBeenCalled();
    clearInterval(timer);
  });
});
