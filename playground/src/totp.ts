/**
 * RFC 4226 (HOTP) / RFC 6238 (TOTP) in the browser with Web Crypto.
 * Pure module: no DOM, no globals besides `crypto.subtle` (also present in Node >= 19),
 * so it is unit-tested with the RFC test vectors (see totp.test.ts).
 */

export type TotpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512';

export interface TotpParams {
  /** Shared secret as raw bytes. */
  key: Uint8Array;
  algorithm: TotpAlgorithm;
  digits: number;
  /** Time step in seconds. */
  period: number;
}

export interface OtpauthInfo {
  secret: string;
  algorithm: TotpAlgorithm;
  digits: number;
  period: number;
  issuer: string | null;
  account: string | null;
}

export const DEFAULTS = { algorithm: 'SHA1' as TotpAlgorithm, digits: 6, period: 30 };

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 Base32 decoding; case-insensitive, ignores spaces, dashes and `=` padding. */
export function base32Decode(input: string): Uint8Array {
  const clean = input.toUpperCase().replace(/[\s=-]/g, '');
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const idx = BASE32_ALPHABET.indexOf(ch);
    if (idx < 0) throw new Error(`invalid Base32 character ${JSON.stringify(ch)}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** Normalises "sha1", "SHA-256", … to one of the three RFC 6238 algorithms (SHA1 when unknown). */
export function normalizeAlgorithm(name: string | null | undefined): TotpAlgorithm {
  const n = (name ?? '').toUpperCase().replace(/[^A-Z0-9]/g, '');
  if (n === 'SHA256') return 'SHA256';
  if (n === 'SHA512') return 'SHA512';
  return 'SHA1';
}

const WEBCRYPTO_HASH: Record<TotpAlgorithm, string> = {
  SHA1: 'SHA-1',
  SHA256: 'SHA-256',
  SHA512: 'SHA-512',
};

/** 8-byte big-endian counter. */
function counterBytes(counter: number): Uint8Array {
  const buf = new Uint8Array(8);
  let c = Math.floor(counter);
  for (let i = 7; i >= 0; i--) {
    buf[i] = c % 256;
    c = Math.floor(c / 256);
  }
  return buf;
}

/** RFC 4226 HOTP value for `counter`, zero-padded to `digits`. */
export async function hotp(
  key: Uint8Array,
  counter: number,
  algorithm: TotpAlgorithm = 'SHA1',
  digits = 6,
): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey(
    'raw',
    key as BufferSource,
    { name: 'HMAC', hash: WEBCRYPTO_HASH[algorithm] },
    false,
    ['sign'],
  );
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, counterBytes(counter) as BufferSource));
  const offset = mac[mac.length - 1] & 0x0f;
  const binary =
    ((mac[offset] & 0x7f) << 24) |
    ((mac[offset + 1] & 0xff) << 16) |
    ((mac[offset + 2] & 0xff) << 8) |
    (mac[offset + 3] & 0xff);
  const code = binary % 10 ** digits;
  return code.toString().padStart(digits, '0');
}

/** Time step (counter) for a Unix time in seconds. */
export function timeStep(unixSeconds: number, period = 30): number {
  return Math.floor(unixSeconds / period);
}

/** Seconds left in the current period (1..period). */
export function secondsRemaining(unixSeconds: number, period = 30): number {
  return period - (Math.floor(unixSeconds) % period);
}

/** RFC 6238 TOTP value at `unixSeconds`. */
export async function totp(params: TotpParams, unixSeconds: number): Promise<string> {
  return hotp(params.key, timeStep(unixSeconds, params.period), params.algorithm, params.digits);
}

/**
 * Parses `otpauth://totp/Issuer:account?secret=…&issuer=…&algorithm=…&digits=…&period=…`.
 * Returns null when it is not a TOTP otpauth URI with a secret.
 */
export function parseOtpauthUri(uri: string): OtpauthInfo | null {
  const m = /^otpauth:\/\/totp\/([^?]*)(?:\?(.*))?$/i.exec(uri.trim());
  if (!m) return null;
  const query = new URLSearchParams(m[2] ?? '');
  const secret = query.get('secret');
  if (!secret) return null;
  let label = m[1];
  try {
    label = decodeURIComponent(label);
  } catch {
    /* keep raw label */
  }
  const colon = label.indexOf(':');
  const labelIssuer = colon >= 0 ? label.slice(0, colon) : null;
  const account = colon >= 0 ? label.slice(colon + 1) : label || null;
  const digits = Number.parseInt(query.get('digits') ?? '', 10);
  const period = Number.parseInt(query.get('period') ?? '', 10);
  return {
    secret,
    algorithm: normalizeAlgorithm(query.get('algorithm') ?? DEFAULTS.algorithm),
    digits: digits >= 1 && digits <= 10 ? digits : DEFAULTS.digits,
    period: period > 0 ? period : DEFAULTS.period,
    issuer: query.get('issuer') ?? labelIssuer,
    account,
  };
}
