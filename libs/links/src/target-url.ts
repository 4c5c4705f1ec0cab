import ipaddr from 'ipaddr.js';

/**
 * The target rules of docs/reference.md sections 2 and 8. A target is parsed with the WHATWG
 * URL parser (the one browsers use to follow the Location header), so every spelling a
 * browser would resolve to the same host is judged as that host: `127.1`, `0x7f000001`
 * and `017700000001` are all 127.0.0.1 by the time the rules look at them. What is
 * stored and sent is the parser's serialisation: ASCII only (punycode host, percent-
 * encoded path, query and fragment), so it is always a valid Location header.
 */

export const MAX_URL_LENGTH = 2048;
// eslint-disable-next-line no-control-regex
const WHITESPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f-\u009f]/;
// JSON can carry a lone UTF-16 surrogate; the URL parser would quietly turn it into U+FFFD.
const LONE_SURROGATE = /\p{Cs}/u;

export interface TargetPolicy {
  /** Hostname of PUBLIC_BASE_URL, as normaliseHostname gives it; null if none. */
  publicHostname: string | null;
  /** ALLOW_PRIVATE_TARGETS: accept private, link-local and unique-local IP literals. */
  allowPrivate: boolean;
  /** BLOCKED_HOSTS, each as normaliseHostname gives it: a host equal to one or ending in `.<entry>` is refused. */
  blockedHosts: readonly string[];
}

export const OPEN_TARGET_POLICY: TargetPolicy = { publicHostname: null, allowPrivate: false, blockedHosts: [] };

export type TargetCheck = { ok: true; url: string } | { ok: false; problem: string };

/** A host as the rules compare it: WHATWG-parsed (lower case, punycode, canonical IP), without trailing dots. */
export function normaliseHostname(host: string): string | null {
  const trimmed = host.trim();
  if (!trimmed) return null;
  try {
    return new URL(`http://${trimmed}/`).hostname.replace(/\.+$/, '');
  } catch {
    return null;
  }
}

/** A policy from the raw settings; throws on a host that cannot be parsed (start-up fails). */
export function targetPolicyOf(settings: { publicBaseUrl: string | null; allowPrivate: boolean; blockedHosts: readonly string[] }): TargetPolicy {
  const blockedHosts = settings.blockedHosts.map((entry) => {
    const host = normaliseHostname(entry.replace(/^\*?\./, ''));
    if (!host) throw new Error(`BLOCKED_HOSTS entry "${entry}" is not a host name`);
    return host;
  });
  return {
    publicHostname: settings.publicBaseUrl ? new URL(settings.publicBaseUrl).hostname.replace(/\.+$/, '') : null,
    allowPrivate: settings.allowPrivate,
    blockedHosts,
  };
}

type AddressClass = 'own' | 'private' | 'public';

// The IPv6 ranges whose last 32 bits are an IPv4 address a packet ends up at.
const EMBEDDING_RANGES = new Set(['ipv4Mapped', 'rfc6145', 'rfc6052']);

function classOfIPv4(address: ipaddr.IPv4): AddressClass {
  const range = address.range();
  if (range === 'loopback' || range === 'unspecified') return 'own';
  return range === 'unicast' ? 'public' : 'private';
}

/** How the rules see an IP literal; null when the host is a name. */
export function addressClassOf(hostname: string): AddressClass | null {
  if (hostname.startsWith('[') && hostname.endsWith(']')) {
    let address: ipaddr.IPv6;
    try {
      address = ipaddr.IPv6.parse(hostname.slice(1, -1));
    } catch {
      return 'private'; // The WHATWG parser accepted it, so this does not happen; refuse rather than guess.
    }
    const range = address.range();
    if (range === 'loopback' || range === 'unspecified') return 'own';
    const parts = address.parts;
    const embedded = (high: number, low: number) => new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
    if (EMBEDDING_RANGES.has(range)) return classOfIPv4(embedded(parts[6], parts[7]));
    // 6to4 (2002:AABB:CCDD::/48) routes to the IPv4 address in bits 16-47.
    if (range === '6to4') return classOfIPv4(embedded(parts[1], parts[2]));
    // The deprecated IPv4-compatible form ::a.b.c.d.
    if (parts.slice(0, 6).every((part) => part === 0)) return classOfIPv4(embedded(parts[6], parts[7]));
    return range === 'unicast' ? 'public' : 'private';
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(hostname)) return classOfIPv4(ipaddr.IPv4.parse(hostname));
  return null;
}

/**
 * Checks a target and gives its normalised form (the one to store and to redirect to),
 * or a sentence saying what is wrong.
 */
export function normaliseTargetUrl(value: string, policy: TargetPolicy = OPEN_TARGET_POLICY): TargetCheck {
  const refuse = (problem: string): TargetCheck => ({ ok: false, problem });
  if (value.length === 0) return refuse('must not be empty');
  if (value.length > MAX_URL_LENGTH) return refuse(`must be at most ${MAX_URL_LENGTH} characters`);
  if (WHITESPACE_OR_CONTROL.test(value)) return refuse('must not contain whitespace or control characters');
  if (LONE_SURROGATE.test(value)) return refuse('must be well-formed Unicode (no lone surrogate)');
  if (!/^https?:/i.test(value)) return /^[a-z][a-z0-9+.-]*:/i.test(value) ? refuse('must use http or https') : refuse('must be an absolute URL');
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    return refuse('must be an absolute URL with a valid host');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return refuse('must use http or https');
  if (parsed.username || parsed.password) return refuse('must not contain user information (user:password@)');
  const host = parsed.hostname.replace(/\.+$/, '');
  if (!host) return refuse('must have a host');
  if (host === 'localhost' || host.endsWith('.localhost') || (policy.publicHostname !== null && host === policy.publicHostname)) {
    return refuse('must not point at this shortener');
  }
  const addressClass = addressClassOf(host);
  if (addressClass === null && !isDnsName(host)) return refuse('must have a host name of DNS labels of 1 to 63 characters, 253 in all');
  if (addressClass === 'own') return refuse('must not point at this shortener');
  if (addressClass === 'private' && !policy.allowPrivate) {
    return refuse('must not point at a private, loopback, link-local or unique-local address');
  }
  if (policy.blockedHosts.some((blocked) => host === blocked || host.endsWith(`.${blocked}`))) return refuse('points at a blocked host');
  const url = parsed.href;
  if (url.length > MAX_URL_LENGTH) return refuse(`must be at most ${MAX_URL_LENGTH} characters once normalised`);
  return { ok: true, url };
}

/** A name DNS can resolve: labels of 1 to 63 octets (punycode already applied), 253 in all. */
function isDnsName(host: string): boolean {
  if (host.length > 253) return false;
  return host.split('.').every((label) => label.length >= 1 && label.length <= 63);
}

/** null when the target is acceptable, or what is wrong with it. */
export function checkTargetUrl(value: string, policy: TargetPolicy = OPEN_TARGET_POLICY): string | null {
  const check = normaliseTargetUrl(value, policy);
  return check.ok ? null : check.problem;
}
