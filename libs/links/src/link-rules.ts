/**
 * The rules of docs/reference.md section 2 as plain functions: the gateway's validators call
 * them, and so can any other client of the library. Each returns null when the value
 * is fine, or a sentence saying what is wrong.
 */

export const ALIAS_PATTERN = /^[A-Za-z0-9_-]{3,32}$/;
export const RESERVED_ALIASES: ReadonlySet<string> = new Set(['api', 'health', 'metrics', 'docs', 'admin', 'static', 'assets', 'favicon.ico', 'robots.txt']);
export const REDIRECT_TYPES = [301, 302, 307, 308] as const;
export type RedirectType = (typeof REDIRECT_TYPES)[number];
export const DEFAULT_REDIRECT_TYPE: RedirectType = 302;

/** Anything that could be a code: generated codes and aliases share this shape. */
const CODE_SHAPE = /^[A-Za-z0-9_-]{3,32}$/;

export function couldBeCode(path: string): boolean {
  return CODE_SHAPE.test(path);
}

export function checkAlias(value: string): string | null {
  if (!ALIAS_PATTERN.test(value)) return 'must be 3 to 32 characters of A-Z, a-z, 0-9, _ and -';
  if (RESERVED_ALIASES.has(value.toLowerCase())) return 'is a reserved word';
  return null;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

export function checkExpiresAt(value: string, now: Date = new Date()): string | null {
  // RFC 3339: a date, a time and an offset (Z or +hh:mm); fractions allowed.
  const parts = RFC3339.exec(value);
  if (!parts) return 'must be an RFC 3339 date-time with an offset';
  const [year, month, day, hour, minute, second] = parts.slice(1, 7).map(Number);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  // Date.parse reads hour 24 as the next day's midnight and lets some other overflows
  // through: every field is checked against its range first.
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) {
    return 'must be a valid date-time';
  }
  if (parts[8] && (Number(parts[9]) > 23 || Number(parts[10]) > 59)) return 'must have a valid offset';
  const time = Date.parse(value);
  if (Number.isNaN(time)) return 'must be a valid date-time';
  if (time <= now.getTime()) return 'must be in the future';
  return null;
}

export function isRedirectType(value: unknown): value is RedirectType {
  return REDIRECT_TYPES.includes(value as RedirectType);
}
