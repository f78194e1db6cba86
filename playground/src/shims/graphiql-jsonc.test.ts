import { describe, expect, it } from 'vitest';
import { formatJSONC, tryParseJSONC } from './graphiql-jsonc';

describe('graphiql jsonc shim', () => {
  it('formats JSON with two spaces, keeping comments', async () => {
    expect(await formatJSONC('{"code":"123456", // six digits\n"x":[1,2]}')).toBe('{\n  "code": "123456", // six digits\n  "x": [\n    1,\n    2\n  ]\n}');
  });
  it('rejects invalid JSON with a position', async () => {
    await expect(formatJSONC('{"code":}')).rejects.toThrow(/line 1, column 9/);
  });
  it('parses variables like GraphiQL', () => {
    expect(tryParseJSONC('{"a":1,}')).toEqual({ a: 1 });
    expect(tryParseJSONC('')).toBeUndefined();
    expect(() => tryParseJSONC('[1]')).toThrow('are not a JSON object.');
  });
});
