/**
 * The example operations opened as GraphiQL tabs, in the order of the enrolment flow, then the
 * admin operations (SPEC §8) in the order an operator helping a user would run them.
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

/** What an operator looks at: where the credential stands and whether it is locked. */
const ADMIN_STATUS = `status {
        userId
        state
        enabled
        lockedUntil
        recoveryCodesRemaining
      }`;

/**
 * The comment lines every admin tab carries: the `admin…` fields need a token with the
 * `twofold:admin` scope, and the page's headers hold the (non-admin) demo token.
 */
export const ADMIN_TOKEN_NOTE = `#     Admin only: the Authorization header needs a token with the twofold:admin scope.
#     In dev mode \`twofold serve\` prints an admin demo token (user demo-admin, scope
#     twofold:admin) beside the normal demo token: put it into this tab's headers.
#     Otherwise mint one with  twofold token --sub ops --scope twofold:admin
#     A token without that scope gets a FORBIDDEN error (and nothing changes).`;

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
  {
    query: `# 10. Admin: any user's two-factor state, lockout and audit trail (newest first, with the
#     admin who acted as actor). A user who never enrolled reads as state NONE. userId is the
#     user's token sub ("demo" is the dev-mode demo token's user).
${ADMIN_TOKEN_NOTE}
query AdminTwoFactor($userId: String!) {
  adminTwoFactor(userId: $userId) {
    __typename
    id
    userId
    state
    enabled
    lockedUntil
    pendingSetupExpiresAt
    enabledAt
    recoveryCodesRemaining
    events(first: 20) {
      __typename
      kind
      at
      actor
      correlationId
    }
  }
}
`,
    variables: '{\n  "userId": "demo"\n}',
  },
  {
    query: `# 11. Admin: the users with a credential (pending, enabled or locked), a page at a time.
#     For the next page, set "after" to pageInfo.endCursor; "state" filters (PENDING,
#     ENABLED, LOCKED) and totalCount counts the filtered users over all pages.
${ADMIN_TOKEN_NOTE}
query AdminTwoFactors($first: Int! = 20, $after: String, $state: TwoFactorState) {
  adminTwoFactors(first: $first, after: $after, state: $state) {
    __typename
    totalCount
    pageInfo {
      hasNextPage
      endCursor
    }
    edges {
      cursor
      node {
        userId
        state
        enabled
        enabledAt
        lockedUntil
        pendingSetupExpiresAt
        recoveryCodesRemaining
      }
    }
  }
}
`,
    variables: '{\n  "first": 20,\n  "after": null,\n  "state": null\n}',
  },
  {
    query: `# 12. Admin: remove a user's credential (enabled or pending) and recovery codes, for a user
#     who lost both their phone and their recovery codes; they can enrol again at once.
#     The reason (at most 500 bytes) is kept with the ADMIN_RESET event, never shown to the user.
${ADMIN_TOKEN_NOTE}
mutation AdminResetTwoFactor($userId: String!, $reason: String) {
  adminResetTwoFactor(userId: $userId, reason: $reason) {
    __typename
    ... on TwoFactorReset {
      resetAt
      ${ADMIN_STATUS}
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
    variables: '{\n  "userId": "demo",\n  "reason": "Lost phone and recovery codes; identity checked by support"\n}',
  },
  {
    query: `# 13. Admin: clear a user's failed attempts and lockout, so the right code works at once
#     (writes an ADMIN_UNLOCKED event).
${ADMIN_TOKEN_NOTE}
mutation AdminUnlockTwoFactor($userId: String!) {
  adminUnlockTwoFactor(userId: $userId) {
    __typename
    ... on TwoFactorUnlocked {
      ${ADMIN_STATUS}
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
    variables: '{\n  "userId": "demo"\n}',
  },
];
