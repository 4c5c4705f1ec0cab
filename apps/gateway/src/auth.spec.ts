import type { ExecutionContext } from '@nestjs/common';
import type { GatewayEnvironment } from '@shortener/config';
import { DomainError } from '@shortener/contracts';
import { AdminGuard, bearerToken, credentialOf, ManageAuthGuard } from './auth';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const config = { ADMIN_TOKEN } as GatewayEnvironment;

function contextWith(authorization?: string) {
  const request = { headers: authorization === undefined ? {} : { authorization } } as Record<string, unknown>;
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

describe('ManageAuthGuard (PATCH and DELETE of a link)', () => {
  const guard = new ManageAuthGuard(config);

  it('answers 401 without a token and 403 with another scheme', () => {
    expect(refusal(() => guard.canActivate(contextWith().context))).toBe('unauthorized');
    expect(refusal(() => guard.canActivate(contextWith('Basic x').context))).toBe('forbidden');
  });

  it('passes the admin token as the admin credential and anything else as a manage token for the writer to check', () => {
    const admin = contextWith(`Bearer ${ADMIN_TOKEN}`);
    expect(guard.canActivate(admin.context)).toBe(true);
    expect(credentialOf(admin.request as never)).toEqual({ admin: true });
    const owner = contextWith(`Bearer ${ADMIN_TOKEN}x`);
    expect(guard.canActivate(owner.context)).toBe(true);
    expect(credentialOf(owner.request as never)).toEqual({ manageToken: `${ADMIN_TOKEN}x` });
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
