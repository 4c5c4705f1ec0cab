import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API keys: `shk_<id>_<secret>`. The id (10 base62 characters) names the key in listings,
 * logs and ownership columns and finds its row; the secret (32 random bytes, base64url) is
 * shown once, and only its SHA-256 is stored. A long random secret needs no slow hash:
 * there is nothing to guess, and a lookup costs one digest.
 */
export const API_KEY_PREFIX = 'shk_';
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const ID_LENGTH = 10;
const KEY_PATTERN = /^shk_([A-Za-z0-9]{10})_([A-Za-z0-9_-]{43})$/;

export interface IssuedApiKey {
  id: string;
  /** The whole key, to hand to the client once. */
  key: string;
  secretHash: Buffer;
}

export function issueApiKey(random: (size: number) => Buffer = randomBytes): IssuedApiKey {
  const idBytes = random(ID_LENGTH);
  // 62 does not divide 256: the slight bias of `% 62` on an identifier (not a secret) is harmless.
  const id = Array.from(idBytes, (byte) => ID_ALPHABET[byte % ID_ALPHABET.length]).join('');
  const secret = random(32).toString('base64url');
  return { id, key: `${API_KEY_PREFIX}${id}_${secret}`, secretHash: hashApiKeySecret(secret) };
}

export function hashApiKeySecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** The id and secret of a well-formed key; null for anything else (the caller answers 401/403). */
export function parseApiKey(key: string): { id: string; secret: string } | null {
  const match = KEY_PATTERN.exec(key);
  return match ? { id: match[1], secret: match[2] } : null;
}

/** Whether `secret` is the one whose hash was stored, in time independent of where they differ. */
export function apiKeySecretMatches(secret: string, storedHash: Buffer): boolean {
  const presented = hashApiKeySecret(secret);
  return storedHash.length === presented.length && timingSafeEqual(presented, storedHash);
}
