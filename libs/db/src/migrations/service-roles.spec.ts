import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { scramVerifier, serviceRoles, setServiceRolePasswords } from './service-roles';
import serviceRolesMigration from './0003-service-roles.migration';

// pg's own SCRAM client (the one every service logs in with), driven against a server that
// knows only the verifier: the check a PostgreSQL server makes (RFC 5802 section 3).
const sasl = require('pg/lib/crypto/sasl') as {
  startSession(mechanisms: string[]): { clientNonce: string; response: string };
  continueSession(session: object, password: string, serverData: string): Promise<void>;
};

async function serverAccepts(verifier: string, password: string): Promise<boolean> {
  const [, iterations, salt, storedKey, serverKey] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier)!;
  const session = sasl.startSession(['SCRAM-SHA-256']) as { clientNonce: string; response: string };
  const nonce = `${session.clientNonce}server-nonce`;
  const serverFirst = `r=${nonce},s=${salt},i=${iterations}`;
  await sasl.continueSession(session, password, serverFirst);
  const clientFinal = session.response; // c=biws,r=<nonce>,p=<proof>
  const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
  const proof = Buffer.from(clientFinal.slice(clientFinal.lastIndexOf(',p=') + 3), 'base64');
  const authMessage = `n=*,r=${session.clientNonce},${serverFirst},${withoutProof}`;
  const signature = createHmac('sha256', Buffer.from(storedKey, 'base64')).update(authMessage).digest();
  const clientKey = Buffer.from(proof.map((byte, i) => byte ^ signature[i]));
  const accepted = timingSafeEqual(createHash('sha256').update(clientKey).digest(), Buffer.from(storedKey, 'base64'));
  // and the server's own signature is the one the client expects
  const serverSignature = createHmac('sha256', Buffer.from(serverKey, 'base64')).update(authMessage).digest('base64');
  return accepted && (session as unknown as { serverSignature: string }).serverSignature === serverSignature;
}

describe('scramVerifier', () => {
  it('is what pg_authid stores: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>', () => {
    expect(scramVerifier('secret', Buffer.alloc(16, 1))).toMatch(/^SCRAM-SHA-256\$4096:AQEBAQEBAQEBAQEBAQEBAQ==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  });

  it('lets pg log in with the password and only with it', async () => {
    const verifier = scramVerifier('generated-password-of-24b');
    expect(await serverAccepts(verifier, 'generated-password-of-24b')).toBe(true);
    expect(await serverAccepts(verifier, 'generated-password-of-24c')).toBe(false);
  });

  it('salts every verifier anew', () => {
    expect(scramVerifier('same')).not.toBe(scramVerifier('same'));
  });
});

describe('setServiceRolePasswords', () => {
  it('sends verifiers, never the passwords, and only for the roles given', async () => {
    const statements: string[] = [];
    const client = {
      query: async (text: string, values?: string[]) => {
        if (values) return { rows: [{ sql: `ALTER ROLE "${values[1]}" PASSWORD '${values[2]}'` }] };
        statements.push(text);
        return { rows: [] };
      },
    };
    const set = await setServiceRolePasswords(client as never, {
      PG_WRITER_PASSWORD: 'writer-password-0123456789',
      PG_MONITOR_PASSWORD: 'monitor-password-0123456789',
    });
    expect(set).toEqual([serviceRoles.PG_WRITER_PASSWORD, serviceRoles.PG_MONITOR_PASSWORD]);
    expect(statements).toEqual([
      expect.stringMatching(/^ALTER ROLE "shortener_writer" PASSWORD 'SCRAM-SHA-256\$4096:/),
      expect.stringMatching(/^ALTER ROLE "shortener_monitor" PASSWORD 'SCRAM-SHA-256\$4096:/),
    ]);
    expect(statements.join('\n')).not.toMatch(/password-0123456789/);
  });
});

describe('migration 3 (service roles)', () => {
  it('holds no password and creates every role it grants to', () => {
    expect(serviceRolesMigration).not.toMatch(/PASSWORD/i);
    for (const role of Object.values(serviceRoles)) expect(serviceRolesMigration).toContain(`'${role}'`);
  });
});
