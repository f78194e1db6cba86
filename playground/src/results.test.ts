import { describe, expect, it } from 'vitest';
import { helperState, publishResult, subscribeResults } from './results';

const b64url = (v: unknown) => btoa(JSON.stringify(v)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const JWS = `${b64url({ alg: 'EdDSA', typ: 'twofold-verification+jwt', kid: 'k1' })}.${b64url({ sub: 'alice', exp: 2000000000, amr: ['otp'] })}.${'A'.repeat(86)}`;

describe('publishResult', () => {
  it('decodes the assertion of a successful verification and keeps it until a newer one', () => {
    let notified = 0;
    const unsubscribe = subscribeResults(() => notified++);
    publishResult('VerifyTotp', { data: { verifyTotp: { __typename: 'TotpVerified', method: 'TOTP', assertion: JWS } } });
    const first = helperState();
    expect(notified).toBe(1);
    expect(first.assertion).toMatchObject({
      token: JWS,
      path: 'data.verifyTotp',
      seq: first.last!.seq,
      error: null,
      decoded: { header: { kid: 'k1' }, claims: { sub: 'alice', amr: ['otp'] }, signatureBytes: 64 },
    });

    // A later failure keeps the assertion (from an earlier result: its seq is not the last one).
    publishResult('VerifyTotp', { data: { verifyTotp: { __typename: 'CodeAlreadyUsed', code: 'CODE_ALREADY_USED', message: '', attemptsRemaining: 4 } } });
    expect(helperState().assertion).toBe(first.assertion);
    expect(helperState().last!.seq).toBeGreaterThan(first.assertion!.seq);

    // A token that is shaped like a JWS but does not decode is shown with the reason.
    publishResult('UseRecoveryCode', { data: { useRecoveryCode: { __typename: 'TotpVerified', assertion: 'eyJ.eyJ.AA' } } });
    expect(helperState().assertion).toMatchObject({ path: 'data.useRecoveryCode', decoded: null, error: expect.any(String) });
    unsubscribe();
  });
});
