/**
 * Replaces @graphiql/react's utility/jsonc.js (wired in vite.config.ts). Same exports; the only
 * change is formatJSONC ("prettify" of the variables and headers editors), which used prettier's
 * babel + estree plugins (~540 kB of JavaScript) and now uses jsonc-parser's formatter, already
 * in the bundle: comments are kept, every object and array is broken onto lines.
 */
import { applyEdits, format, parse, printParseErrorCode, type ParseError } from 'jsonc-parser';

export async function formatJSONC(content: string): Promise<string> {
  const errors: ParseError[] = [];
  parse(content, errors, { allowTrailingComma: true, allowEmptyContent: true });
  if (errors.length) throw new SyntaxError(describe(content, errors));
  const edits = format(content, undefined, { tabSize: 2, insertSpaces: true, eol: '\n', insertFinalNewline: false });
  return applyEdits(content, edits);
}

const formatter = new Intl.ListFormat('en', { style: 'long', type: 'conjunction' });
const PARSE_ERROR_MESSAGES: Record<string, string> = {
  InvalidSymbol: 'invalid symbol',
  InvalidNumberFormat: 'invalid number format',
  PropertyNameExpected: 'expected a property name',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected a colon',
  CommaExpected: 'expected a comma',
  CloseBraceExpected: 'expected a closing brace',
  CloseBracketExpected: 'expected a closing bracket',
  EndOfFileExpected: 'expected end of file',
  InvalidCommentToken: 'invalid comment token',
  UnexpectedEndOfComment: 'unexpected end of comment',
  UnexpectedEndOfString: 'unexpected end of string',
  UnexpectedEndOfNumber: 'unexpected end of number',
  InvalidUnicode: 'invalid unicode',
  InvalidEscapeCharacter: 'invalid escape character',
  InvalidCharacter: 'invalid character',
};

function getLineAndColumn(content: string, offset: number) {
  const before = content.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: offset - lineStart + 1 };
}

function describe(content: string, errors: ParseError[]): string {
  return formatter.format(
    errors.map(({ error, offset }) => {
      const code = printParseErrorCode(error);
      const { line, column } = getLineAndColumn(content, offset);
      return `${PARSE_ERROR_MESSAGES[code] ?? code} at line ${line}, column ${column}`;
    }),
  );
}

export function parseJSONC(content: string): unknown {
  const errors: ParseError[] = [];
  const parsed = parse(content, errors, { allowTrailingComma: true, allowEmptyContent: true });
  if (errors.length) throw new SyntaxError(describe(content, errors));
  return parsed;
}

export function tryParseJSONC(json = ''): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = parseJSONC(json);
  } catch (error) {
    throw new Error(`are invalid JSON: ${error instanceof Error ? error.message : error}.`);
  }
  if (!parsed) return undefined;
  if (!(typeof parsed === 'object' && !Array.isArray(parsed))) throw new TypeError('are not a JSON object.');
  return parsed as Record<string, unknown>;
}
