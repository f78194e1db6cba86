import { useEffect, useRef } from 'react';
import { expiry, JWKS_PATH, numericDate } from './assertion';
import { CopyButton } from './CopyButton';
import type { HelperState } from './results';

type Shown = NonNullable<HelperState['assertion']>;

/**
 * The signed assertion of the last successful `verifyTotp` / `useRecoveryCode`, decoded (header
 * and claims pretty-printed) with a countdown to its `exp`. Decoded only: the signature is checked
 * by the application's backend against the key set, not here.
 */
export function AssertionCard({ assertion, fromLastResult, now }: { assertion: Shown; fromLastResult: boolean; now: number }) {
  const ref = useRef<HTMLElement>(null);
  // Bring a newly arrived assertion into view (the panel scrolls).
  useEffect(() => {
    ref.current?.scrollIntoView?.({ block: 'nearest' });
  }, [assertion.seq]);

  const { decoded } = assertion;
  const claims = decoded?.claims ?? {};
  const kid = decoded && typeof decoded.header.kid === 'string' ? decoded.header.kid : null;
  const exp = expiry(claims.exp, now);
  const lifetime = typeof claims.exp === 'number' && typeof claims.iat === 'number' ? claims.exp - claims.iat : 0;
  const field = assertion.path.split('.').pop() || assertion.path || 'result';
  const times: [string, string | null][] = [
    ['iat', numericDate(claims.iat)],
    ['auth_time', numericDate(claims.auth_time)],
    ['exp', numericDate(claims.exp)],
  ];

  return (
    <section className="totp-card" data-testid="assertion" ref={ref}>
      <div className="totp-label">Verification assertion</div>
      <p className="totp-muted" data-testid="assertion-source">
        From {fromLastResult ? 'the last result' : 'an earlier result'}: <code>{field}</code>
        {[assertion.typename, assertion.method, assertion.verifiedAt].filter(Boolean).map((v) => ` · ${v}`).join('')}
      </p>
      {assertion.error && (
        <p className="assertion-error" data-testid="assertion-error">
          Not a decodable JWS: {assertion.error}.
        </p>
      )}
      {decoded && (
        <>
          <div className="assertion-expiry-row">
            <span
              className={exp?.expired ? 'assertion-expiry assertion-expired' : 'assertion-expiry'}
              data-testid="assertion-expiry"
              aria-live="off"
            >
              {exp ? exp.text : 'no exp claim'}
            </span>
            {exp && lifetime > 0 && <progress className="totp-progress" max={lifetime} value={exp.secondsLeft} />}
          </div>
          <p className="totp-muted">
            Signed with key <code data-testid="assertion-kid">{kid ?? '(no kid)'}</code>
            {typeof decoded.header.alg === 'string' ? ` (${decoded.header.alg})` : ''}. Decoded here, not verified: the
            application's backend checks the signature against that key in{' '}
            <a href={JWKS_PATH} target="_blank" rel="noopener noreferrer" data-testid="assertion-jwks">
              {JWKS_PATH}
            </a>
            , and the <code>exp</code>, <code>aud</code> and <code>nonce</code> claims.
          </p>
          <div className="totp-label">Header</div>
          <pre className="assertion-json" data-testid="assertion-header">
            {JSON.stringify(decoded.header, null, 2)}
          </pre>
          <div className="totp-label">Claims</div>
          <pre className="assertion-json" data-testid="assertion-claims">
            {JSON.stringify(claims, null, 2)}
          </pre>
          <dl className="assertion-times">
            {times
              .filter(([, v]) => v)
              .map(([k, v]) => (
                <div key={k}>
                  <dt>{k}</dt>
                  <dd>{v}</dd>
                </div>
              ))}
          </dl>
        </>
      )}
      <div className="totp-actions">
        <CopyButton text={assertion.token} testId="assertion-copy" label="Copy assertion" />
      </div>
      <details className="totp-uri">
        <summary>Compact JWS</summary>
        <code data-testid="assertion-token">{assertion.token}</code>
      </details>
    </section>
  );
}
