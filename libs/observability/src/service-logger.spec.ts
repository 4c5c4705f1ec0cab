import { Writable } from 'node:stream';
import { createServiceLogger } from './service-logger';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, destination };
}

describe('createServiceLogger', () => {
  it('writes one JSON line per event with the service, pid, monitor id and an ISO time', () => {
    const { lines, destination } = capture();
    const log = createServiceLogger({ service: 'failover-monitor', level: 'info', base: { monitor: 'm1' }, destination });
    log.info({ shard: 2 }, 'failover done');
    log.debug('below the level');

    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]);
    expect(line).toMatchObject({ service: 'failover-monitor', monitor: 'm1', pid: process.pid, shard: 2, msg: 'failover done', level: 30 });
    expect(new Date(line.time).toISOString()).toBe(line.time);
  });

  it('never writes a credential, at the top level or one level down', () => {
    const { lines, destination } = capture();
    const log = createServiceLogger({ service: 'gateway', level: 'info', destination });
    const secrets = ['pw-1', 'tok-2', 'adm-3', 'shk_key_4', 'mng-5', 'rpc-6', 'postgres://u:pw-7@h/db', 'Bearer abc-8'];
    log.info(
      {
        password: secrets[0],
        token: secrets[1],
        config: { adminToken: secrets[2], apiKey: secrets[3], rpcSecret: secrets[5], connectionString: secrets[6] },
        body: { manageToken: secrets[4] },
        req: { headers: { authorization: secrets[7], 'x-api-key': secrets[3], cookie: 'session=9' } },
      },
      'request',
    );

    expect(lines).toHaveLength(1);
    for (const secret of [...secrets, 'session=9']) expect(lines[0]).not.toContain(secret);
    expect(JSON.parse(lines[0]).config.adminToken).toBe('[redacted]');
  });
});
