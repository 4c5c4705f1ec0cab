import { createHash, timingSafeEqual } from 'node:crypto';
import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { DomainError, type UpdateLinkCommand } from '@shortener/contracts';
import type { GatewayEnvironment } from '@shortener/config';
import type { FastifyRequest } from 'fastify';
import type { ApiKeyVerifier } from './api-keys';
import { API_KEYS, GATEWAY_CONFIG } from './gateway.constants';

export type Credential = UpdateLinkCommand['credential'];
type AuthenticatedRequest = FastifyRequest & { credential?: Credential };

export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : '';
}

export function sameSecret(a: string, b: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/**
 * PATCH and DELETE of a link: the admin token, an API key (checked here; the writer
 * checks that the link is the key's) or a manage token (checked by the writer).
 */
@Injectable()
export class ManageAuthGuard implements CanActivate {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayEnvironment,
    @Inject(API_KEYS) private readonly keys: ApiKeyVerifier,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const key = await this.keys.verify(request);
    if (key) {
      request.credential = { apiKey: key.id };
      return true;
    }
    const token = bearerToken(request);
    if (token === null) throw new DomainError('unauthorized', 'an Authorization: Bearer header is required');
    if (token === '') throw new DomainError('forbidden', 'the Authorization header is not a bearer token');
    request.credential = sameSecret(token, this.config.ADMIN_TOKEN) ? { admin: true } : { manageToken: token };
    return true;
  }
}

@Injectable()
export class AdminGuard implements CanActivate {
  constructor(@Inject(GATEWAY_CONFIG) private readonly config: GatewayEnvironment) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const token = bearerToken(request);
    if (token === null) throw new DomainError('unauthorized', 'an Authorization: Bearer header is required');
    if (!token || !sameSecret(token, this.config.ADMIN_TOKEN)) {
      throw new DomainError('forbidden', 'the token is not the admin token');
    }
    return true;
  }
}

export function credentialOf(request: FastifyRequest): Credential {
  const credential = (request as AuthenticatedRequest).credential;
  if (!credential) throw new DomainError('unauthorized', 'an Authorization: Bearer header is required');
  return credential;
}
