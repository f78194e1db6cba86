/**
 * The example operations opened as GraphiQL tabs, in the order of the enrolment flow.
 * Every result union is matched with an inline fragment per member, plus `... on UserError`.
 */

const STATUS = `status {
        id
        enabled
        enabledAt
        recoveryCodesRemaining
        algorithm
        digits
        period
      }`;

/**
 * A nonce like a host application would issue when a login starts: `login-` and 16 random hex
 * digits (visible ASCII, within the 1–255 characters `nonce` accepts).
 */
export function loginNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `login-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export interface ExampleTab {
  query: string;
  variables?: string;
}

export const EXAMPLES: ExampleTab[] = [
  {
    query: `# 1. Begin enrolment, secret only (what Cloudreve's GET /user/setting/2fa returns).
#    The TOTP helper panel on the left shows the current code for the secret.
mutation PrepareTwoFactor {
  prepareTwoFactor {
    __typename
    ... on TwoFactorSecret {
      secret
      expiresAt
    }
    ... on TotpAlreadyEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
  },
  {
    query: `# 2. Begin enrolment with a QR code for an authenticator app (replaces any pending secret).
#    The TOTP helper panel shows the QR code, the secret and the current code.
mutation SetupTotp {
  setupTotp {
    __typename
    ... on TotpSetup {
      secret
      qrCode
      otpauthUri
      expiresAt
    }
    ... on TotpAlreadyEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
  },
  {
    query: `# 3. Turn two-factor on with a current code of the pending secret.
#    Use the "Use in variables" button of the TOTP helper panel, then run.
#    The 10 recovery codes are shown once.
mutation EnableTotp($code: String!) {
  enableTotp(code: $code) {
    __typename
    ... on TotpEnabled {
      recoveryCodes
      enabledAt
      ${STATUS}
    }
    ... on NoPendingSetup {
      code
      message
    }
    ... on InvalidCode {
      code
      message
      attemptsRemaining
    }
    ... on TooManyAttempts {
      code
      message
      retryAfterSeconds
    }
    ... on TotpAlreadyEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
    variables: '{\n  "code": "123456"\n}',
  },
  {
    query: `# 4. The login step: check a code of the enabled secret.
#    Each code is accepted once (replay protection): wait for the next one to verify again.
#    A success carries a signed assertion; the TOTP helper panel shows it decoded.
mutation VerifyTotp($code: String!) {
  verifyTotp(code: $code) {
    __typename
    ... on TotpVerified {
      verifiedAt
      method
      assertion
      recoveryCodesRemaining
      ${STATUS}
    }
    ... on InvalidCode {
      code
      message
      attemptsRemaining
    }
    ... on CodeAlreadyUsed {
      code
      message
      attemptsRemaining
    }
    ... on TooManyAttempts {
      code
      message
      retryAfterSeconds
    }
    ... on TotpNotEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
    variables: '{\n  "code": "123456"\n}',
  },
  {
    query: `# 5. The login step as a host application runs it: its backend starts the login with a
#    fresh nonce, the browser sends the nonce with the code, and the backend accepts the returned
#    assertion only if its signature checks out against /.well-known/jwks.json, it has not
#    expired and its nonce claim is the one it issued. "Use in variables" fills in the code;
#    the TOTP helper panel shows the assertion decoded, with its expiry counting down.
mutation VerifyTotpWithNonce($code: String!, $nonce: String) {
  verifyTotp(code: $code, nonce: $nonce) {
    __typename
    ... on TotpVerified {
      verifiedAt
      method
      assertion
    }
    ... on UserError {
      code
      message
    }
    ... on InvalidCode {
      attemptsRemaining
    }
    ... on CodeAlreadyUsed {
      attemptsRemaining
    }
    ... on TooManyAttempts {
      retryAfterSeconds
    }
  }
}
`,
    variables: JSON.stringify({ code: '', nonce: loginNonce() }, null, 2),
  },
  {
    query: `# 6. Log in with a single-use recovery code instead of a TOTP code.
mutation UseRecoveryCode($code: String!) {
  useRecoveryCode(code: $code) {
    __typename
    ... on TotpVerified {
      verifiedAt
      method
      assertion
      recoveryCodesRemaining
      ${STATUS}
    }
    ... on InvalidCode {
      code
      message
      attemptsRemaining
    }
    ... on CodeAlreadyUsed {
      code
      message
      attemptsRemaining
    }
    ... on TooManyAttempts {
      code
      message
      retryAfterSeconds
    }
    ... on TotpNotEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
    variables: '{\n  "code": "XXXXX-XXXXX"\n}',
  },
  {
    query: `# 7. Replace all recovery codes (needs a current TOTP code).
mutation RegenerateRecoveryCodes($code: String!) {
  regenerateRecoveryCodes(code: $code) {
    __typename
    ... on RecoveryCodes {
      recoveryCodes
    }
    ... on InvalidCode {
      code
      message
      attemptsRemaining
    }
    ... on CodeAlreadyUsed {
      code
      message
      attemptsRemaining
    }
    ... on TooManyAttempts {
      code
      message
      retryAfterSeconds
    }
    ... on TotpNotEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
    variables: '{\n  "code": "123456"\n}',
  },
  {
    query: `# 8. Turn two-factor off with a current TOTP code or an unused recovery code.
mutation DisableTotp($code: String!) {
  disableTotp(code: $code) {
    __typename
    ... on TotpDisabled {
      disabledAt
      ${STATUS}
    }
    ... on InvalidCode {
      code
      message
      attemptsRemaining
    }
    ... on CodeAlreadyUsed {
      code
      message
      attemptsRemaining
    }
    ... on TooManyAttempts {
      code
      message
      retryAfterSeconds
    }
    ... on TotpNotEnabled {
      code
      message
    }
    ... on UserError {
      code
      message
    }
  }
}
`,
    variables: '{\n  "code": "123456"\n}',
  },
  {
    query: `# 9. The caller's two-factor state and audit trail (newest first).
query TwoFactorStatus {
  twoFactor {
    __typename
    id
    enabled
    pendingSetupExpiresAt
    enabledAt
    recoveryCodesRemaining
    algorithm
    digits
    period
    events(first: 20) {
      __typename
      kind
      at
      correlationId
    }
  }
}
`,
  },
];
