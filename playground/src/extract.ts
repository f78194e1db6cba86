/**
 * Finds TOTP enrolment material, recovery codes and verification assertions in a GraphQL (or
 * REST) JSON result. Pure module, unit-tested in extract.test.ts.
 */
import { COMPACT_JWS } from './assertion';
import { DEFAULTS, parseOtpauthUri, type TotpAlgorithm } from './totp';

export interface TotpMaterial {
  secret: string;
  qrCode: string | null;
  otpauthUri: string | null;
  algorithm: TotpAlgorithm;
  digits: number;
  period: number;
  issuer: string | null;
  account: string | null;
  /** GraphQL path of the object the material came from, e.g. `data.setupTotp`. */
  path: string;
}

/**
 * The signed assertion of a successful verification (`TotpVerified.assertion`, or Storno's
 * `{"verified":true,"assertion":"…"}`).
 */
export interface FoundAssertion {
  /** The compact JWS. */
  token: string;
  /** Path of the object it came from, e.g. `data.verifyTotp`. */
  path: string;
  /** `__typename` of that object when selected, e.g. `TotpVerified`. */
  typename: string | null;
  /** `verifiedAt` and `method` of that object when selected. */
  verifiedAt: string | null;
  method: string | null;
}

export interface Findings {
  totp: TotpMaterial | null;
  recoveryCodes: string[] | null;
  assertion: FoundAssertion | null;
}

const BASE32_SECRET = /^[A-Z2-7]{16,128}=*$/i;
const QR_DATA_URI = /^data:image\/(png|gif|jpeg|svg\+xml);base64,[A-Za-z0-9+/=]+$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function materialFrom(obj: Record<string, unknown>, path: string): TotpMaterial | null {
  const uri = typeof obj.otpauthUri === 'string' ? obj.otpauthUri : null;
  const parsed = uri ? parseOtpauthUri(uri) : null;
  let secret = typeof obj.secret === 'string' ? obj.secret : null;
  if (!secret && parsed) secret = parsed.secret;
  // Cloudreve's envelope carries the secret as `data`.
  if (!secret && typeof obj.data === 'string' && 'code' in obj && BASE32_SECRET.test(obj.data)) secret = obj.data;
  if (!secret || !BASE32_SECRET.test(secret.replace(/\s/g, ''))) return null;
  const qr = typeof obj.qrCode === 'string' && QR_DATA_URI.test(obj.qrCode) ? obj.qrCode : null;
  return {
    secret: secret.replace(/\s/g, '').toUpperCase(),
    qrCode: qr,
    otpauthUri: uri,
    algorithm: parsed?.algorithm ?? DEFAULTS.algorithm,
    digits: parsed?.digits ?? DEFAULTS.digits,
    period: parsed?.period ?? DEFAULTS.period,
    issuer: parsed?.issuer ?? null,
    account: parsed?.account ?? null,
    path,
  };
}

function assertionFrom(obj: Record<string, unknown>, path: string): FoundAssertion | null {
  const token = obj.assertion;
  if (typeof token !== 'string' || !COMPACT_JWS.test(token)) return null;
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  return { token, path, typename: str(obj.__typename), verifiedAt: str(obj.verifiedAt), method: str(obj.method) };
}

/** Depth-first walk; the last match in document order wins. */
export function findTotpMaterial(result: unknown): Findings {
  const findings: Findings = { totp: null, recoveryCodes: null, assertion: null };
  const walk = (node: unknown, path: string, depth: number) => {
    if (depth > 32) return;
    if (Array.isArray(node)) {
      node.forEach((item, i) => walk(item, `${path}[${i}]`, depth + 1));
      return;
    }
    if (!isRecord(node)) return;
    const m = materialFrom(node, path);
    if (m) findings.totp = m;
    const a = assertionFrom(node, path);
    if (a) findings.assertion = a;
    for (const key of ['recoveryCodes', 'backupCodes']) {
      const codes = node[key];
      if (Array.isArray(codes) && codes.length > 0 && codes.every((c) => typeof c === 'string')) {
        findings.recoveryCodes = codes as string[];
      }
    }
    for (const [k, v] of Object.entries(node)) {
      if (typeof v === 'object' && v !== null) walk(v, path ? `${path}.${k}` : k, depth + 1);
    }
  };
  walk(result, '', 0);
  return findings;
}
