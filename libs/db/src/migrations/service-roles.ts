import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import type { ClientBase } from 'pg';
import { databaseRolePasswordVariables, databaseRoles } from '@shortener/config';

/** The login roles migration 3 creates, by the variable that carries each one's password. */
export const serviceRoles = {
  [databaseRolePasswordVariables.writer]: databaseRoles.writer,
  [databaseRolePasswordVariables.reader]: databaseRoles.reader,
  [databaseRolePasswordVariables['failover-monitor']]: databaseRoles['failover-monitor'],
} as const;

export type ServiceRolePasswords = Partial<Record<keyof typeof serviceRoles, string>>;

const SCRAM_ITERATIONS = 4096; // PostgreSQL's own default (scram_iterations)

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677, the format
 * of pg_authid.rolpassword). Sending this instead of the password keeps the password out
 * of the statement, so it cannot reach a server log. Passwords are expected to be ASCII
 * (generated base64url), for which SASLprep changes nothing.
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = SCRAM_ITERATIONS): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const storedKey = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Sets the passwords given (roles without one are left as they are). Run by the migrate
 * CLI, as the superuser, after the migrations created the roles. Idempotent.
 */
export async function setServiceRolePasswords(client: ClientBase, passwords: ServiceRolePasswords): Promise<string[]> {
  const set: string[] = [];
  for (const [variable, role] of Object.entries(serviceRoles) as [keyof typeof serviceRoles, string][]) {
    const password = passwords[variable];
    if (!password) continue;
    // ALTER ROLE takes no parameters: format() quotes the verifier as a literal.
    const { rows } = await client.query<{ sql: string }>('SELECT format($1, $2::text, $3::text) AS sql', [
      'ALTER ROLE %I PASSWORD %L',
      role,
      scramVerifier(password),
    ]);
    await client.query(rows[0].sql);
    set.push(role);
  }
  return set;
}
