import { apiKeySecretMatches, hashApiKeySecret, issueApiKey, parseApiKey } from './api-key';

describe('API keys', () => {
  it('issues shk_<id>_<secret> keys whose secret only a hash remembers', () => {
    const issued = issueApiKey();
    expect(issued.key).toMatch(/^shk_[A-Za-z0-9]{10}_[A-Za-z0-9_-]{43}$/);
    const parsed = parseApiKey(issued.key);
    expect(parsed?.id).toBe(issued.id);
    expect(issued.secretHash).toHaveLength(32);
    expect(issued.secretHash.toString('latin1')).not.toContain(parsed?.secret);
    expect(apiKeySecretMatches(parsed?.secret as string, issued.secretHash)).toBe(true);
  });

  it('gives every key its own id and secret', () => {
    const keys = Array.from({ length: 200 }, () => issueApiKey());
    expect(new Set(keys.map((key) => key.id)).size).toBe(200);
    expect(new Set(keys.map((key) => key.key)).size).toBe(200);
  });

  it('refuses a secret that differs anywhere, and a hash of another length', () => {
    const { key, secretHash } = issueApiKey();
    const { secret } = parseApiKey(key) as { secret: string };
    for (const position of [0, 21, 42]) {
      const changed = secret.slice(0, position) + (secret[position] === 'A' ? 'B' : 'A') + secret.slice(position + 1);
      expect(apiKeySecretMatches(changed, secretHash)).toBe(false);
    }
    expect(apiKeySecretMatches(secret, secretHash.subarray(0, 16))).toBe(false);
    expect(apiKeySecretMatches(secret, hashApiKeySecret(secret))).toBe(true);
  });

  it('parses only well-formed keys', () => {
    const { key } = issueApiKey();
    for (const bad of ['', 'shk_', key.slice(0, -1), `${key}x`, key.replace('shk_', 'sk_'), key.replace(/_/, '-'), ` ${key}`, `Bearer ${key}`]) {
      expect(parseApiKey(bad)).toBeNull();
    }
  });
});
