import { describe, expect, it } from 'vitest';
import { EXAMPLES } from './examples';
import { withVariable } from './variables';

describe('withVariable ("Use in variables")', () => {
  it('fills code and keeps the other variables in order', () => {
    const out = withVariable('{\n  "code": "",\n  "nonce": "login-0123456789abcdef"\n}', 'code', '123456');
    expect(out).toBe('{\n  "code": "123456",\n  "nonce": "login-0123456789abcdef"\n}');
  });
  it('adds code to an empty or invalid editor', () => {
    expect(JSON.parse(withVariable('', 'code', '123456'))).toEqual({ code: '123456' });
    expect(JSON.parse(withVariable('{ "code": ', 'code', '123456'))).toEqual({ code: '123456' });
    expect(JSON.parse(withVariable('[1]', 'code', 'X'))).toEqual({ code: 'X' });
  });
  it('fills the VerifyTotpWithNonce tab, keeping its nonce', () => {
    const tab = EXAMPLES.find((t) => t.query.includes('mutation VerifyTotpWithNonce'))!;
    const before = JSON.parse(tab.variables!);
    expect(JSON.parse(withVariable(tab.variables!, 'code', '654321'))).toEqual({ code: '654321', nonce: before.nonce });
  });
});
