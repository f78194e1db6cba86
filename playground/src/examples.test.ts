import { describe, expect, it } from 'vitest';
import { buildSchema, Kind, parse, validate, type OperationDefinitionNode } from 'graphql';
// The SDL the server serves at /schema.graphql (checked in at the repository root).
import sdl from '../../schema.graphql?raw';
import { EXAMPLES, loginNonce } from './examples';

const schema = buildSchema(sdl);

function operation(query: string): OperationDefinitionNode {
  const ops = parse(query).definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  expect(ops).toHaveLength(1);
  return ops[0];
}

describe('example tabs', () => {
  it('come in flow order, one named operation each (the tab title)', () => {
    expect(EXAMPLES.map((t) => operation(t.query).name?.value)).toEqual([
      'PrepareTwoFactor',
      'SetupTotp',
      'EnableTotp',
      'VerifyTotp',
      'VerifyTotpWithNonce',
      'UseRecoveryCode',
      'RegenerateRecoveryCodes',
      'DisableTotp',
      'TwoFactorStatus',
    ]);
  });

  for (const tab of EXAMPLES) {
    const op = operation(tab.query);
    it(`${op.name?.value} validates against schema.graphql and its variables cover the required ones`, () => {
      expect(validate(schema, parse(tab.query)).map((e) => e.message)).toEqual([]);
      const vars = tab.variables ? JSON.parse(tab.variables) : {};
      for (const v of op.variableDefinitions ?? []) {
        if (v.type.kind === Kind.NON_NULL_TYPE) expect(vars, `$${v.variable.name.value}`).toHaveProperty(v.variable.name.value);
      }
      const declared = new Set((op.variableDefinitions ?? []).map((v) => v.variable.name.value));
      expect(Object.keys(vars).filter((k) => !declared.has(k))).toEqual([]);
    });
  }

  it('select the assertion of every verification that can succeed', () => {
    for (const name of ['VerifyTotp', 'VerifyTotpWithNonce', 'UseRecoveryCode']) {
      const tab = EXAMPLES.find((t) => operation(t.query).name?.value === name)!;
      expect(tab.query, name).toMatch(/\.\.\. on TotpVerified \{[^}]*\bassertion\b/);
    }
  });

  it('VerifyTotpWithNonce passes a nonce the server accepts, and an empty code for "Use in variables"', () => {
    const tab = EXAMPLES.find((t) => operation(t.query).name?.value === 'VerifyTotpWithNonce')!;
    expect(tab.query).toContain('verifyTotp(code: $code, nonce: $nonce)');
    const vars = JSON.parse(tab.variables!);
    expect(Object.keys(vars)).toEqual(['code', 'nonce']);
    expect(vars.code).toBe('');
    // SPEC §7: 1–255 characters of visible ASCII (! to ~).
    expect(vars.nonce).toMatch(/^login-[0-9a-f]{16}$/);
    expect(vars.nonce).toMatch(/^[!-~]{1,255}$/);
    expect(loginNonce()).not.toBe(loginNonce());
  });
});
