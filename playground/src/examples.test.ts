import { describe, expect, it } from 'vitest';
import { buildSchema, Kind, parse, validate, type OperationDefinitionNode } from 'graphql';
// The SDL the server serves at /schema.graphql (checked in at the repository root).
import sdl from '../../schema.graphql?raw';
import { ADMIN_TOKEN_NOTE, EXAMPLES, loginNonce } from './examples';

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
      'AdminTwoFactor',
      'AdminTwoFactors',
      'AdminResetTwoFactor',
      'AdminUnlockTwoFactor',
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

  const ADMIN_TABS = ['AdminTwoFactor', 'AdminTwoFactors', 'AdminResetTwoFactor', 'AdminUnlockTwoFactor'];
  const tabNamed = (name: string) => EXAMPLES.find((t) => operation(t.query).name?.value === name)!;

  it('say in their comment header how to get an admin token, and what happens without one', () => {
    for (const note of [
      'twofold:admin',
      'demo-admin',
      '`twofold serve`',
      'twofold token --sub ops --scope twofold:admin',
      'FORBIDDEN',
    ]) {
      expect(ADMIN_TOKEN_NOTE).toContain(note);
    }
    expect(ADMIN_TOKEN_NOTE.split('\n').every((l) => l.startsWith('#'))).toBe(true);
    for (const name of ADMIN_TABS) {
      const query = tabNamed(name).query;
      const header = query.slice(0, query.search(/^(query|mutation) /m));
      expect(header, name).toContain(ADMIN_TOKEN_NOTE);
    }
    // Only the admin tabs need the admin scope.
    expect(EXAMPLES.filter((t) => t.query.includes(ADMIN_TOKEN_NOTE)).map((t) => operation(t.query).name?.value)).toEqual(ADMIN_TABS);
  });

  it('AdminTwoFactor selects the state, the lockout and the events with their actor', () => {
    const query = tabNamed('AdminTwoFactor').query;
    expect(query).toContain('adminTwoFactor(userId: $userId)');
    for (const field of ['state', 'lockedUntil']) expect(query).toMatch(new RegExp(`^\\s+${field}$`, 'm'));
    expect(query).toMatch(/events\(first: 20\) \{[^}]*\bkind\b[^}]*\bat\b[^}]*\bactor\b[^}]*\bcorrelationId\b/);
  });

  it('AdminTwoFactors pages with first/after/state and selects pageInfo and totalCount', () => {
    const tab = tabNamed('AdminTwoFactors');
    expect(tab.query).toContain('adminTwoFactors(first: $first, after: $after, state: $state)');
    expect(tab.query).toMatch(/pageInfo \{\s*hasNextPage\s*endCursor\s*\}/);
    expect(tab.query).toMatch(/^\s+totalCount$/m);
    expect(tab.query).toMatch(/edges \{\s*cursor\s*node \{/);
    expect(JSON.parse(tab.variables!)).toEqual({ first: 20, after: null, state: null });
  });

  it('the admin mutations match every member of their result union by __typename', () => {
    const members: Record<string, string[]> = {
      AdminResetTwoFactor: ['TwoFactorReset', 'TotpNotEnabled'],
      AdminUnlockTwoFactor: ['TwoFactorUnlocked', 'TotpNotEnabled'],
    };
    const unions: Record<string, string> = {
      AdminResetTwoFactor: 'AdminResetTwoFactorResult',
      AdminUnlockTwoFactor: 'AdminUnlockTwoFactorResult',
    };
    for (const [name, types] of Object.entries(members)) {
      const query = tabNamed(name).query;
      expect(query, name).toMatch(/\) \{\n\s+__typename\n/);
      const union = schema.getType(unions[name]);
      expect(union && 'getTypes' in union ? union.getTypes().map((t) => t.name).sort() : null).toEqual([...types].sort());
      for (const t of types) expect(query, name).toContain(`... on ${t} {`);
    }
    expect(tabNamed('AdminResetTwoFactor').query).toContain('adminResetTwoFactor(userId: $userId, reason: $reason)');
    expect(tabNamed('AdminUnlockTwoFactor').query).toContain('adminUnlockTwoFactor(userId: $userId)');
    // SPEC §8: the reason is at most 500 bytes.
    expect(new TextEncoder().encode(JSON.parse(tabNamed('AdminResetTwoFactor').variables!).reason).length).toBeLessThanOrEqual(500);
  });
});
