import { describe, expect, it } from 'vitest';
import { base64UrlDecode, COMPACT_JWS, decodeJws, expiry, formatDuration, numericDate, viewAssertion } from './assertion';

const utf8 = new TextEncoder();
/** base64url without padding (RFC 7515 §2). */
function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
const json = (v: unknown) => b64url(utf8.encode(JSON.stringify(v)));

const HEADER = { alg: 'EdDSA', typ: 'twofold-verification+jwt', kid: 'k-2026-01' };
const CLAIMS = {
  iss: 'http://127.0.0.1:8080',
  sub: 'jörg', // non-ASCII: the claims are UTF-8
  aud: 'my-app',
  iat: 1_767_225_600,
  exp: 1_767_225_900,
  jti: '01JH3X8Q2W4E6R8T0Y2U4I6O8P',
  auth_time: 1_767_225_600,
  amr: ['otp'],
  nonce: 'login-0123456789abcdef',
};
const SIGNATURE = new Uint8Array(64).map((_, i) => (i * 37 + 251) & 0xff); // includes bytes that need - and _
const TOKEN = `${json(HEADER)}.${json(CLAIMS)}.${b64url(SIGNATURE)}`;

describe('base64UrlDecode', () => {
  const text = (s: string) => new TextDecoder().decode(base64UrlDecode(s));
  it('decodes the RFC 4648 test vectors, with or without padding', () => {
    expect(text('')).toBe('');
    expect(text('Zg')).toBe('f');
    expect(text('Zg==')).toBe('f');
    expect(text('Zm8')).toBe('fo');
    expect(text('Zm9v')).toBe('foo');
    expect(text('Zm9vYg')).toBe('foob');
    expect(text('Zm9vYmE')).toBe('fooba');
    expect(text('Zm9vYmFy')).toBe('foobar');
  });
  it('uses the URL-safe alphabet', () => {
    expect([...base64UrlDecode('-_8')]).toEqual([0xfb, 0xff]);
    expect(() => base64UrlDecode('+/8')).toThrow();
  });
  it('rejects what is not base64url', () => {
    expect(() => base64UrlDecode('Zm9v!')).toThrow();
    expect(() => base64UrlDecode('Zm9vY')).toThrow(); // 5 characters: not a whole byte
    expect(() => base64UrlDecode('Zm 9v')).toThrow();
  });
});

describe('decodeJws', () => {
  it('decodes header, claims and the signature length of a verification assertion', () => {
    expect(COMPACT_JWS.test(TOKEN)).toBe(true);
    const d = decodeJws(TOKEN);
    expect(d.header).toEqual(HEADER);
    expect(d.claims).toEqual(CLAIMS);
    expect(d.signatureBytes).toBe(64);
  });
  it('says what is wrong with a malformed token', () => {
    expect(() => decodeJws('a.b')).toThrow(/compact JWS/);
    expect(() => decodeJws(`${json(HEADER)}..${b64url(SIGNATURE)}`)).toThrow(/compact JWS/);
    expect(() => decodeJws(`${b64url(utf8.encode('{nope'))}.${json(CLAIMS)}.AA`)).toThrow(/header is not JSON/);
    expect(() => decodeJws(`${json(HEADER)}.${json(['a'])}.AA`)).toThrow(/claims is not a JSON object/);
    expect(() => decodeJws(`${json(HEADER)}.${b64url(new Uint8Array([0xff, 0xfe]))}.AA`)).toThrow(/claims is not base64url-encoded UTF-8/);
    expect(() => decodeJws(`${json(HEADER)}.${json(CLAIMS)}.A`)).toThrow(/signature/);
  });
  it('viewAssertion keeps the token and turns errors into a message', () => {
    expect(viewAssertion(TOKEN)).toMatchObject({ token: TOKEN, error: null, decoded: { header: HEADER } });
    expect(viewAssertion('x.y.z')).toMatchObject({ token: 'x.y.z', decoded: null, error: expect.stringMatching(/header/) });
  });
});

describe('expiry countdown', () => {
  const exp = CLAIMS.exp;
  const at = (secondsBeforeExp: number) => expiry(exp, (exp - secondsBeforeExp) * 1000);
  it('counts whole seconds down to exp, rounding up', () => {
    expect(at(300)).toEqual({ expired: false, secondsLeft: 300, text: 'expires in 5:00' });
    expect(at(299.8)?.text).toBe('expires in 5:00');
    expect(at(299)?.text).toBe('expires in 4:59');
    expect(at(61)?.text).toBe('expires in 1:01');
    expect(at(0.4)).toEqual({ expired: false, secondsLeft: 1, text: 'expires in 0:01' });
  });
  it('is expired from exp on (RFC 7519 §4.1.4)', () => {
    expect(at(0)).toEqual({ expired: true, secondsLeft: 0, text: 'expired' });
    expect(at(-3600)?.text).toBe('expired');
  });
  it('ticks once per second from iat to expired', () => {
    const seen: string[] = [];
    for (let i = 0; i <= 301; i++) seen.push(expiry(exp, (CLAIMS.iat + 0.25 + i) * 1000)!.text);
    expect(seen[0]).toBe('expires in 5:00');
    expect(seen[1]).toBe('expires in 4:59');
    expect(seen.at(-3)).toBe('expires in 0:01');
    expect(seen.slice(-2)).toEqual(['expired', 'expired']);
    expect(new Set(seen).size).toBe(seen.length - 1); // one new text per tick until expired
  });
  it('gives null without a numeric exp', () => {
    expect(expiry(undefined, 0)).toBeNull();
    expect(expiry('1767225900', 0)).toBeNull();
    expect(expiry(Number.NaN, 0)).toBeNull();
  });
});

describe('formatting', () => {
  it('formatDuration: m:ss, h:mm:ss from an hour on', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(9)).toBe('0:09');
    expect(formatDuration(299)).toBe('4:59');
    expect(formatDuration(3599)).toBe('59:59');
    expect(formatDuration(3600)).toBe('1:00:00');
    expect(formatDuration(3661)).toBe('1:01:01');
    expect(formatDuration(-5)).toBe('0:00');
  });
  it('numericDate: seconds since the epoch as UTC', () => {
    expect(numericDate(CLAIMS.iat)).toBe('2026-01-01T00:00:00Z');
    expect(numericDate(1.5)).toBe('1970-01-01T00:00:01.500Z');
    expect(numericDate('0')).toBeNull();
  });
});
