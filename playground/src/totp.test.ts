import { describe, expect, it } from 'vitest';
import { base32Decode, hotp, parseOtpauthUri, secondsRemaining, timeStep, totp, type TotpAlgorithm } from './totp';

const enc = new TextEncoder();
// RFC 6238 Appendix B seeds: ASCII "1234567890" repeated to the hash's block length.
const SEEDS: Record<TotpAlgorithm, Uint8Array> = {
  SHA1: enc.encode('12345678901234567890'),
  SHA256: enc.encode('12345678901234567890123456789012'),
  SHA512: enc.encode('1234567890123456789012345678901234567890123456789012345678901234'),
};

// RFC 6238 Appendix B: [time, SHA1, SHA256, SHA512] (8 digits, 30 s step).
const VECTORS: [number, string, string, string][] = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
];

describe('RFC 6238 TOTP test vectors', () => {
  for (const [t, sha1, sha256, sha512] of VECTORS) {
    it(`SHA1 T=${t} -> ${sha1}`, async () => {
      expect(await totp({ key: SEEDS.SHA1, algorithm: 'SHA1', digits: 8, period: 30 }, t)).toBe(sha1);
    });
    it(`SHA256 T=${t} -> ${sha256}`, async () => {
      expect(await totp({ key: SEEDS.SHA256, algorithm: 'SHA256', digits: 8, period: 30 }, t)).toBe(sha256);
    });
    it(`SHA512 T=${t} -> ${sha512}`, async () => {
      expect(await totp({ key: SEEDS.SHA512, algorithm: 'SHA512', digits: 8, period: 30 }, t)).toBe(sha512);
    });
  }
  it('6 digits are the last 6 digits of the 8-digit value', async () => {
    expect(await totp({ key: SEEDS.SHA1, algorithm: 'SHA1', digits: 6, period: 30 }, 59)).toBe('287082');
    expect(await totp({ key: SEEDS.SHA1, algorithm: 'SHA1', digits: 6, period: 30 }, 1111111109)).toBe('081804');
  });
});

describe('RFC 4226 HOTP test vectors', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => {
    it(`counter ${counter} -> ${code}`, async () => {
      expect(await hotp(SEEDS.SHA1, counter)).toBe(code);
    });
  });
});

describe('base32Decode', () => {
  it('decodes the RFC 4648 vectors', () => {
    const dec = (s: string) => new TextDecoder().decode(base32Decode(s));
    expect(dec('')).toBe('');
    expect(dec('MY======')).toBe('f');
    expect(dec('MZXQ====')).toBe('fo');
    expect(dec('MZXW6===')).toBe('foo');
    expect(dec('MZXW6YQ=')).toBe('foob');
    expect(dec('MZXW6YTB')).toBe('fooba');
    expect(dec('MZXW6YTBOI======')).toBe('foobar');
  });
  it('is case-insensitive and ignores spaces', () => {
    expect(base32Decode('mzxw 6ytb oi')).toEqual(base32Decode('MZXW6YTBOI'));
  });
  it('decodes the RFC 6238 seed written in Base32 (a 32-character, unpadded secret)', async () => {
    const key = base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    expect(new TextDecoder().decode(key)).toBe('12345678901234567890');
    expect(await totp({ key, algorithm: 'SHA1', digits: 6, period: 30 }, 59)).toBe('287082');
  });
  it('rejects characters outside the alphabet', () => {
    expect(() => base32Decode('ABC1')).toThrow();
  });
});

describe('parseOtpauthUri', () => {
  it('reads secret and parameters', () => {
    const info = parseOtpauthUri(
      'otpauth://totp/Twofold:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Twofold&algorithm=SHA256&digits=8&period=60',
    );
    expect(info).toEqual({
      secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
      algorithm: 'SHA256',
      digits: 8,
      period: 60,
      issuer: 'Twofold',
      account: 'alice@example.com',
    });
  });
  it('defaults to SHA1 / 6 / 30', () => {
    const info = parseOtpauthUri('otpauth://totp/My%20Org:bob?secret=ABC');
    expect(info).toMatchObject({ algorithm: 'SHA1', digits: 6, period: 30, issuer: 'My Org', account: 'bob' });
  });
  it('rejects other URIs', () => {
    expect(parseOtpauthUri('otpauth://hotp/x?secret=ABC')).toBeNull();
    expect(parseOtpauthUri('https://example.com')).toBeNull();
    expect(parseOtpauthUri('otpauth://totp/x')).toBeNull();
  });
});

describe('time helpers', () => {
  it('computes step and countdown', () => {
    expect(timeStep(59, 30)).toBe(1);
    expect(timeStep(60, 30)).toBe(2);
    expect(secondsRemaining(59, 30)).toBe(1);
    expect(secondsRemaining(60, 30)).toBe(30);
    expect(secondsRemaining(61.9, 30)).toBe(29);
  });
});
