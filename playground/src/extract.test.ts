import { describe, expect, it } from 'vitest';
import { findTotpMaterial } from './extract';

const SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const QR = 'data:image/png;base64,iVBORw0KGgo=';

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
    expect(findTotpMaterial({ errors: [{ message: 'nope', extensions: { code: 'UNAUTHENTICATED' } }] })).toEqual({ totp: null, recoveryCodes: null });
    expect(findTotpMaterial({ data: { x: { secret: 'not base32!' } } }).totp).toBeNull();
    expect(findTotpMaterial(null)).toEqual({ totp: null, recoveryCodes: null });
  });
});
