import { useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import type { GraphiQLPlugin } from '@graphiql/react';
import { useGraphiQL } from '@graphiql/react';
import { AssertionCard } from './AssertionCard';
import { CopyButton } from './CopyButton';
import type { TotpMaterial } from './extract';
import { helperState, subscribeResults, type PublishedResult } from './results';
import { base32Decode, secondsRemaining, totp } from './totp';
import { withVariable } from './variables';

/** `__typename`s of the top-level fields of a GraphQL result, e.g. "setupTotp: TotpSetup". */
function summarize(r: PublishedResult | null): string | null {
  if (!r) return null;
  const res = r.result as { data?: Record<string, unknown> | null; errors?: { message?: string; extensions?: { code?: string } }[] };
  const parts: string[] = [];
  if (res && typeof res.data === 'object' && res.data) {
    for (const [field, value] of Object.entries(res.data)) {
      const t = value && typeof value === 'object' && '__typename' in value ? String((value as { __typename: unknown }).__typename) : null;
      parts.push(t ? `${field}: ${t}` : field);
    }
  }
  if (res && Array.isArray(res.errors) && res.errors.length > 0) {
    const e = res.errors[0];
    parts.push(`error${e.extensions?.code ? ` ${e.extensions.code}` : ''}: ${e.message ?? ''}`);
  }
  return parts.join(', ') || null;
}

function useNow(): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(id);
  }, []);
  return now;
}

function useTotpCode(m: TotpMaterial | null, now: number): string | null {
  const [code, setCode] = useState<string | null>(null);
  const key = useMemo(() => {
    if (!m) return null;
    try {
      return base32Decode(m.secret);
    } catch {
      return null;
    }
  }, [m]);
  const step = m ? Math.floor(now / 1000 / m.period) : 0;
  useEffect(() => {
    if (!m || !key) {
      setCode(null);
      return;
    }
    let live = true;
    totp({ key, algorithm: m.algorithm, digits: m.digits, period: m.period }, step * m.period).then(
      (c) => live && setCode(c),
      () => live && setCode(null),
    );
    return () => {
      live = false;
    };
  }, [m, key, step]);
  return code;
}

/** Puts `{"code": value}` into the variables editor of the active tab (keeping other variables). */
function useSetCodeVariable(): ((value: string) => void) | null {
  const variableEditor = useGraphiQL((s) => s.variableEditor);
  if (!variableEditor) return null;
  return (value: string) => {
    variableEditor.setValue(withVariable(variableEditor.getValue(), 'code', value));
    // Show the variables pane so the change is visible.
    const btn = document.querySelector<HTMLButtonElement>('.graphiql-editor-tools button[data-name="variables"]');
    if (btn && !btn.classList.contains('active')) btn.click();
  };
}

function TotpHelper() {
  const { last, material, recoveryCodes: recovery, assertion } = useSyncExternalStore(subscribeResults, helperState);

  const now = useNow();
  const code = useTotpCode(material, now);
  const setCodeVariable = useSetCodeVariable();
  const remaining = material ? secondsRemaining(now / 1000, material.period) : 0;
  const summary = summarize(last);

  return (
    <div className="totp-helper" data-testid="totp-helper">
      <div className="graphiql-doc-explorer-title">TOTP helper</div>
      {summary && (
        <p className="totp-last">
          Last result{last?.operationName ? ` (${last.operationName})` : ''}:{' '}
          <span data-testid="last-result">{summary}</span>
        </p>
      )}
      {!material && (
        <p className="totp-muted" data-testid="totp-empty">
          Run <b>SetupTotp</b> (or <b>PrepareTwoFactor</b>): the QR code, the secret and the current code of the
          returned secret appear here, computed in this browser.
        </p>
      )}
      {material && (
        <section className="totp-card">
          {material.qrCode && (
            <img
              className="totp-qr"
              data-testid="totp-qr"
              src={material.qrCode}
              width={200}
              height={200}
              alt="QR code of the otpauth URI: scan it with an authenticator app"
            />
          )}
          <div className="totp-label">Current code</div>
          <div className="totp-code-row">
            <code className="totp-code" data-testid="totp-code" aria-live="polite">
              {code ?? ''}
            </code>
            <span className="totp-countdown" data-testid="totp-countdown" title="seconds until the next code">
              {remaining}s
            </span>
          </div>
          <progress className="totp-progress" max={material.period} value={remaining} />
          <div className="totp-actions">
            {code && <CopyButton text={code} testId="totp-copy" />}
            {code && setCodeVariable && (
              <button type="button" className="totp-btn totp-btn-primary" data-testid="totp-use-code" onClick={() => setCodeVariable(code)}>
                Use in variables
              </button>
            )}
          </div>
          <p className="totp-muted">
            Each code is accepted once: to verify again, wait for the next one.
          </p>
          <div className="totp-label">Secret (Base32)</div>
          <div className="totp-secret-row">
            <code className="totp-secret" data-testid="totp-secret">
              {material.secret}
            </code>
            <CopyButton text={material.secret} testId="totp-copy-secret" />
          </div>
          <div className="totp-params" data-testid="totp-params">
            {material.algorithm} · {material.digits} digits · {material.period} s
            {material.account ? ` · ${material.issuer ? `${material.issuer}: ` : ''}${material.account}` : ''}
          </div>
          {material.otpauthUri && (
            <details className="totp-uri">
              <summary>otpauth URI</summary>
              <code data-testid="totp-uri">{material.otpauthUri}</code>
            </details>
          )}
        </section>
      )}
      {assertion && <AssertionCard assertion={assertion} fromLastResult={assertion.seq === last?.seq} now={now} />}
      {recovery && (
        <section className="totp-card">
          <div className="totp-label">Recovery codes (shown once; click one to use it)</div>
          <ul className="totp-recovery" data-testid="recovery-codes">
            {recovery.map((rc) => (
              <li key={rc}>
                <button
                  type="button"
                  className="totp-recovery-code"
                  data-testid="recovery-code"
                  title="Put this recovery code into the variables"
                  disabled={!setCodeVariable}
                  onClick={() => setCodeVariable?.(rc)}
                >
                  {rc}
                </button>
              </li>
            ))}
          </ul>
          <CopyButton text={recovery.join('\n')} testId="recovery-copy" label="Copy all" />
        </section>
      )}
    </div>
  );
}

function KeyIcon() {
  return (
    <svg viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="1.5" aria-hidden="true">
      <rect x="3" y="10" width="18" height="11" rx="2" />
      <path d="M7 10V7a5 5 0 0 1 10 0v3" />
      <path d="M12 14v3" strokeLinecap="round" />
    </svg>
  );
}

export const totpPlugin: GraphiQLPlugin = {
  title: 'TOTP helper',
  icon: KeyIcon,
  content: TotpHelper,
};
