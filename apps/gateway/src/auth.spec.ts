import type { ExecutionContext } from '@nestjs/common';
import type { GatewayEnvironment } from '@shortener/config';
import { DomainError, RpcPatterns, type ApiKeyCredential } from '@shortener/contracts';
import { issueApiKey } from '@shortener/links';
import { ApiKeyVerifier, type KeyLookup } from './api-keys';
import { AdminGuard, bearerToken, credentialOf, ManageAuthGuard } from './auth';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const config = { ADMIN_TOKEN } as GatewayEnvironment;

function contextWith(authorization?: string, extra: Record<string, string> = {}) {
  const request = { headers: { ...(authorization === undefined ? {} : { authorization }), ...extra } } as Record<string, unknown>;
  const context = { switchToHttp: () => ({ getRequest: () => request }) } as unknown as ExecutionContext;
  return { request, context };
}

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof DomainError) return error.kind;
    throw error;
  }
  return 'allowed';
}

describe('bearerToken', () => {
  it('reads the token of a Bearer header (any case), "" for another scheme, null without a header', () => {
    expect(bearerToken(contextWith('Bearer abc').request as never)).toBe('abc');
    expect(bearerToken(contextWith('bearer   abc  ').request as never)).toBe('abc');
    expect(bearerToken(contextWith('Basic YWxhZGRpbjpvcGVu').request as never)).toBe('');
    expect(bearerToken(contextWith('Bearer a b').request as never)).toBe('');
    expect(bearerToken(contextWith().request as never)).toBeNull();
  });
});

async function asyncRefusal(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    if (error instanceof DomainError) return error.kind;
    throw error;
  }
  return 'allowed';
}

describe('ManageAuthGuard (PATCH and DELETE of a link)', () => {
  const issued = issueApiKey();
  const row: ApiKeyCredential = { id: issued.id, secretHash: issued.secretHash.toString('base64'), rateLimitPerMinute: null, revoked: false };
  const lookup: KeyLookup = {
    call: async <T>(pattern: string, payload: unknown) => {
      if (pattern !== RpcPatterns.getKey) throw new Error(pattern);
      if ((payload as { id: string }).id !== issued.id) throw new DomainError('not-found', 'none');
      return row as T;
    },
  };
  const guard = new ManageAuthGuard(config, new ApiKeyVerifier(lookup));

  it('answers 401 without a token and 403 with another scheme', async () => {
    expect(await asyncRefusal(() => guard.canActivate(contextWith().context))).toBe('unauthorized');
    expect(await asyncRefusal(() => guard.canActivate(contextWith('Basic x').context))).toBe('forbidden');
  });

  it('passes the admin token as the admin credential and anything else as a manage token for the writer to check', async () => {
    const admin = contextWith(`Bearer ${ADMIN_TOKEN}`);
    expect(await guard.canActivate(admin.context)).toBe(true);
    expect(credentialOf(admin.request as never)).toEqual({ admin: true });
    const owner = contextWith(`Bearer ${ADMIN_TOKEN}x`);
    expect(await guard.canActivate(owner.context)).toBe(true);
    expect(credentialOf(owner.request as never)).toEqual({ manageToken: `${ADMIN_TOKEN}x` });
  });

  it('passes a live API key (bearer or X-Api-Key) as the key credential, and refuses a key that is not live with 401', async () => {
    for (const context of [contextWith(`Bearer ${issued.key}`), contextWith(undefined, { 'x-api-key': issued.key })]) {
      expect(await guard.canActivate(context.context)).toBe(true);
      expect(credentialOf(context.request as never)).toEqual({ apiKey: issued.id });
    }
    const other = issueApiKey();
    expect(await asyncRefusal(() => guard.canActivate(contextWith(`Bearer ${other.key}`).context))).toBe('unauthorized');
    expect(await asyncRefusal(() => guard.canActivate(contextWith(undefined, { 'x-api-key': 'nonsense' }).context))).toBe('unauthorized');
  });

  it('gives no credential to a request no guard saw', () => {
    expect(refusal(() => credentialOf(contextWith('Bearer x').request as never))).toBe('unauthorized');
  });
});

describe('AdminGuard', () => {
  const guard = new AdminGuard(config);

  it('lets only the admin token through: 401 without one, 403 for any other token, also one that shares a prefix', () => {
    expect(guard.canActivate(contextWith(`Bearer ${ADMIN_TOKEN}`).context)).toBe(true);
    expect(refusal(() => guard.canActivate(contextWith().context))).toBe('unauthorized');
    for (const token of ['x', ADMIN_TOKEN.slice(0, -1), `${ADMIN_TOKEN}0`, ADMIN_TOKEN.toUpperCase()]) {
      expect({ token, answer: refusal(() => guard.canActivate(contextWith(`Bearer ${token}`).context)) }).toEqual({ token, answer: 'forbidden' });
    }
    expect(refusal(() => guard.canActivate(contextWith('Basic x').context))).toBe('forbidden');
  });
});
