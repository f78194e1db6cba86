/**
 * The variables editor's JSON with one variable set (others kept, in their order); invalid JSON or
 * a non-object is replaced. Used by "Use in variables" and the recovery-code buttons.
 */
export function withVariable(text: string, name: string, value: unknown): string {
  let vars: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text || '{}');
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) vars = parsed as Record<string, unknown>;
  } catch {
    /* replace invalid JSON */
  }
  vars[name] = value;
  return JSON.stringify(vars, null, 2);
}
