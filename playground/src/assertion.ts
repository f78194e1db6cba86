/**
 * Decodes the signed verification assertion of a `TotpVerified` result (SPEC §7): a compact JWS
 * (`header.claims.signature`, each part base64url without padding). Only decoded for display:
 * the signature is not checked in the page (the host application's backend checks it against
 * `/.well-known/jwks.json`). Pure module, unit-tested in assertion.test.ts.
 */

/** The JWK Set the assertion's `kid` is looked up in. */
export const JWKS_PATH = '/.well-known/jwks.json';

/** Three base64url parts separated by dots (a compact JWS, as a JWT). */
export const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export interface DecodedJws {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** Length of the decoded signature in bytes (64 for Ed25519). */
  signatureBytes: number;
}

/** RFC 4648 §5 base64url, with or without `=` padding. Throws on anything else. */
export function base64UrlDecode(input: string): Uint8Array {
  const s = input.replace(/=+$/, '');
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) throw new Error('not base64url');
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function jsonPart(part: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(base64UrlDecode(part));
  } catch {
    throw new Error(`the ${what} is not base64url-encoded UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`the ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`the ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** Splits and decodes a compact JWS. Throws an Error saying what is wrong with it. */
export function decodeJws(token: string): DecodedJws {
  const parts = token.trim().split('.');
  if (parts.length !== 3 || parts.some((p) => p === '')) throw new Error('not a compact JWS (header.claims.signature)');
  const header = jsonPart(parts[0], 'header');
  const claims = jsonPart(parts[1], 'claims');
  let signatureBytes: number;
  try {
    signatureBytes = base64UrlDecode(parts[2]).length;
  } catch {
    throw new Error('the signature is not base64url');
  }
  return { header, claims, signatureBytes };
}

/** `4:59` (minutes:seconds), `1:00:00` from an hour on. */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export interface Expiry {
  expired: boolean;
  /** Whole seconds left, rounded up (0 once expired). */
  secondsLeft: number;
  /** "expires in 4:59" or "expired". */
  text: string;
}

/**
 * Countdown to the `exp` claim (NumericDate, seconds) at `nowMs` (milliseconds since the epoch).
 * Expired from the instant `exp` (RFC 7519 §4.1.4: must not be accepted on or after it). Null when
 * `exp` is not a number.
 */
export function expiry(exp: unknown, nowMs: number): Expiry | null {
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return null;
  const left = exp - nowMs / 1000;
  if (left <= 0) return { expired: true, secondsLeft: 0, text: 'expired' };
  const secondsLeft = Math.ceil(left);
  return { expired: false, secondsLeft, text: `expires in ${formatDuration(secondsLeft)}` };
}

/** A NumericDate claim as an ISO 8601 UTC time, or null when it is not a number. */
export function numericDate(value: unknown): string | null {
  if (typeof value !== 'number' || !Number.isFinite(value)) return null;
  const d = new Date(value * 1000);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace('.000Z', 'Z');
}

/** A found assertion and what decoding it gave (one of `decoded`, `error`). */
export interface AssertionView {
  token: string;
  decoded: DecodedJws | null;
  error: string | null;
}

export function viewAssertion(token: string): AssertionView {
  try {
    return { token, decoded: decodeJws(token), error: null };
  } catch (e) {
    return { token, decoded: null, error: e instanceof Error ? e.message : String(e) };
  }
}
