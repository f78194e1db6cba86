import { describe, expect, it } from 'vitest';
import { findTotpMaterial } from './extract';

const SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const QR = 'data:image/png;base64,iVBORw0KGgo=';
const JWS = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln';

describe('findTotpMaterial', () => {
  it('finds setupTotp output with parameters from the otpauth URI', () => {
    const f = findTotpMaterial({
      data: {
        setupTotp: {
          __typename: 'TotpSetup',
          secret: SECRET,
          qrCode: QR,
          otpauthUri: `otpauth://totp/Twofold:alice%40example.com?secret=${SECRET}&issuer=Twofold&algorithm=SHA512&digits=8&period=60`,
          expiresAt: '2026-11-25T01:02:03Z',
        },
      },
    });
    expect(f.totp).toMatchObject({ secret: SECRET, qrCode: QR, algorithm: 'SHA512', digits: 8, period: 60, path: 'data.setupTotp' });
    expect(f.recoveryCodes).toBeNull();
  });
  it('finds prepareTwoFactor output (secret only, defaults)', () => {
    const f = findTotpMaterial({ data: { prepareTwoFactor: { __typename: 'TwoFactorSecret', secret: SECRET } } });
    expect(f.totp).toMatchObject({ secret: SECRET, qrCode: null, algorithm: 'SHA1', digits: 6, period: 30 });
  });
  it('finds the Cloudreve envelope secret', () => {
    expect(findTotpMaterial({ code: 0, data: SECRET, msg: '' }).totp?.secret).toBe(SECRET);
  });
  it('finds recovery codes', () => {
    const f = findTotpMaterial({ data: { enableTotp: { __typename: 'TotpEnabled', recoveryCodes: ['7KQ2M-XR9TD', 'ABCDE-FGHJK'] } } });
    expect(f.totp).toBeNull();
    expect(f.recoveryCodes).toEqual(['7KQ2M-XR9TD', 'ABCDE-FGHJK']);
  });
  it('ignores errors and unrelated strings', () => {
    expect(findTotpMaterial({ errors: [{ message: 'nope', extensions: { code: 'UNAUTHENTICATED' } }] })).toEqual({ totp: null, recoveryCodes: null, assertion: null });
    expect(findTotpMaterial({ data: { x: { secret: 'not base32!' } } }).totp).toBeNull();
    expect(findTotpMaterial(null)).toEqual({ totp: null, recoveryCodes: null, assertion: null });
  });
  it('finds the assertion of a verification (GraphQL, aliased, Storno REST)', () => {
    const f = findTotpMaterial({
      data: {
        verifyTotp: { __typename: 'TotpVerified', verifiedAt: '2026-01-01T00:00:00Z', method: 'TOTP', assertion: JWS, status: { enabled: true } },
      },
    });
    expect(f.assertion).toEqual({ token: JWS, path: 'data.verifyTotp', typename: 'TotpVerified', verifiedAt: '2026-01-01T00:00:00Z', method: 'TOTP' });
    expect(f.totp).toBeNull();
    expect(findTotpMaterial({ data: { login: { assertion: JWS } } }).assertion).toMatchObject({ path: 'data.login', typename: null, method: null });
    expect(findTotpMaterial({ verified: true, assertion: JWS }).assertion).toMatchObject({ token: JWS, path: '' });
  });
  it('finds no assertion in a failed verification or in what is not a compact JWS', () => {
    expect(findTotpMaterial({ data: { verifyTotp: { __typename: 'InvalidCode', code: 'INVALID_CODE', message: 'no', attemptsRemaining: 4 } } }).assertion).toBeNull();
    expect(findTotpMaterial({ data: { x: { assertion: 'not a jws' } } }).assertion).toBeNull();
    expect(findTotpMaterial({ data: { x: { assertion: 'a.b' } } }).assertion).toBeNull();
  });
});
