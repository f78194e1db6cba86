import { describe, expect, it } from 'vitest';
import { fixOperationName } from './fetcher';

describe('fixOperationName', () => {
  it('keeps a name that exists in the document', () => {
    const p = { query: 'mutation A { a } mutation B { b }', operationName: 'B' };
    expect(fixOperationName(p)).toEqual(p);
  });
  it('replaces a stale name when the document has one operation', () => {
    expect(fixOperationName({ query: 'mutation SetupTotp { a }', operationName: 'PrepareTwoFactor' }).operationName).toBe('SetupTotp');
    expect(fixOperationName({ query: '{ a }', operationName: 'X' }).operationName).toBeNull();
  });
  it('leaves invalid documents and ambiguous ones alone', () => {
    expect(fixOperationName({ query: 'mutation {', operationName: 'X' }).operationName).toBe('X');
    expect(fixOperationName({ query: 'query A { a } query B { b }', operationName: 'X' }).operationName).toBe('X');
  });
});
