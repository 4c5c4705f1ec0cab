/**
 * The rules of CONTRACT.md section 2 as plain functions: the gateway's validators call
 * them, and so can any other client of the library. Each returns null when the value
 * is fine, or a sentence saying what is wrong.
 */

export const MAX_URL_LENGTH = 2048;
export const ALIAS_PATTERN = /^[A-Za-z0-9_-]{3,32}$/;
export const RESERVED_ALIASES: ReadonlySet<string> = new Set(['api', 'health', 'metrics', 'docs', 'admin', 'static', 'assets', 'favicon.ico', 'robots.txt']);
export const REDIRECT_TYPES = [301, 302, 307, 308] as const;
export type RedirectType = (typeof REDIRECT_TYPES)[number];
export const DEFAULT_REDIRECT_TYPE: RedirectType = 302;

/** Anything that could be a code: generated codes and aliases share this shape. */
const CODE_SHAPE = /^[A-Za-z0-9_-]{3,32}$/;
// eslint-disable-next-line no-control-regex
const WHITESPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f-\u009f]/;

export function couldBeCode(path: string): boolean {
  return CODE_SHAPE.test(path);
}

export function checkTargetUrl(value: string, publicHost: string | null): string | null {
  if (value.length === 0) return 'must not be empty';
  if (value.length > MAX_URL_LENGTH) return `must be at most ${MAX_URL_LENGTH} characters`;
  if (WHITESPACE_OR_CONTROL.test(value)) return 'must not contain whitespace or control characters';
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    return 'must be an absolute URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must use http or https';
  if (!parsed.hostname) return 'must have a host';
  if (publicHost !== null && parsed.host.toLowerCase() === publicHost.toLowerCase()) {
    return 'must not point at this shortener';
  }
  return null;
}

export function checkAlias(value: string): string | null {
  if (!ALIAS_PATTERN.test(value)) return 'must be 3 to 32 characters of A-Z, a-z, 0-9, _ and -';
  if (RESERVED_ALIASES.has(value.toLowerCase())) return 'is a reserved word';
  return null;
}

export function checkExpiresAt(value: string, now: Date = new Date()): string | null {
  // RFC 3339: a date, a time and an offset (Z or +hh:mm); fractions allowed.
  if (!/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(value)) {
    return 'must be an RFC 3339 date-time with an offset';
  }
  const [year, month, day] = value.slice(0, 10).split('-').map(Number);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const time = Date.parse(value);
  if (Number.isNaN(time) || month < 1 || month > 12 || day < 1 || day > daysInMonth) {
    return 'must be a valid date-time';
  }
  if (time <= now.getTime()) return 'must be in the future';
  return null;
}

export function isRedirectType(value: unknown): value is RedirectType {
  return REDIRECT_TYPES.includes(value as RedirectType);
}
