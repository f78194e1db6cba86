'use strict';
// Dependency-free helpers for bench/load.sh and bench/compare.sh (Node >= 18: fetch, base64url).
//
//   node tools.js mint SECRET COUNT PREFIX [EMAIL]
//       COUNT HS256 tokens, one per line: sub = PREFIX-i, email = EMAIL or PREFIX-i@bench.test,
//       iat = now, exp = now + 1 h.
//   node tools.js seed BASE_URL SECRET PREFIX MAX_USERS OUT_FILE [CONC]
//       Users with TOTP enabled, through the public API only: Cloudreve prepare
//       (GET /user/setting/2fa -> pending secret), then Storno enable
//       (POST /api/v1/me/mfa/totp/enable {code} with the code of the current step - 1).
//       Each phase stops starting requests after SEED_SECONDS (6). Writes one token per enabled
//       user to OUT_FILE; prints "users=N" on stdout and a summary on stderr.
//   node tools.js qr BASE_URL SECRET SUB EMAIL
//       One Storno setup for a fresh user whose token carries EMAIL; prints
//       "qr_data_uri_bytes=N png_bytes=N png=WxH depth=D colour=C uri_bytes=N status=S".
const crypto = require('node:crypto');
const fs = require('node:fs');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function mintHs256(secret, claims) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest();
  return `${header}.${payload}.${b64url(sig)}`;
}

function token(secret, sub, email) {
  const now = Math.floor(Date.now() / 1000);
  return mintHs256(secret, { sub, email: email || `${sub}@bench.test`, iat: now, exp: now + 3600 });
}

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`bad base32 char ${ch}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function totpAt(secretBase32, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32Decode(secretBase32)).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1e6).padStart(6, '0');
}

const currentStep = () => Math.floor(Date.now() / 1000 / 30);

async function call(method, url, tok, body) {
  const headers = { authorization: `Bearer ${tok}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

// Runs fn over items with conc in flight; stops starting new ones after budgetMs.
async function pool(items, conc, budgetMs, fn) {
  const deadline = Date.now() + budgetMs;
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < items.length && Date.now() < deadline) {
      const i = next++;
      await fn(items[i], i);
    }
  }));
}

async function seed(base, secret, prefix, maxUsers, out, conc) {
  const budget = Number(process.env.SEED_SECONDS || 6) * 1000;
  const users = [];
  for (let i = 0; i < maxUsers; i++) users.push({ tok: token(secret, `${prefix}-${i}`) });
  const errors = [];
  const note = (what, r) => { if (errors.length < 3) errors.push(`${what} answered ${r.status}: ${r.text.slice(0, 200)}`); };

  let t0 = Date.now();
  await pool(users, conc, budget, async (u) => {
    const r = await call('GET', `${base}/user/setting/2fa`, u.tok);
    let body = null;
    try { body = JSON.parse(r.text); } catch { /* counted below */ }
    if (r.status === 200 && body && body.code === 0) u.secret = body.data; else note('prepare', r);
  });
  const prepared = users.filter((u) => u.secret);
  const prepS = (Date.now() - t0) / 1000;

  t0 = Date.now();
  let failed = 0;
  await pool(prepared, conc, budget, async (u) => {
    const r = await call('POST', `${base}/api/v1/me/mfa/totp/enable`, u.tok, { code: totpAt(u.secret, currentStep() - 1) });
    if (r.status === 200) u.enabled = true; else { failed++; note('enable', r); }
  });
  const enableS = (Date.now() - t0) / 1000;
  const enabled = prepared.filter((u) => u.enabled);
  fs.writeFileSync(out, enabled.map((u) => u.tok).join('\n') + '\n');
  console.error(`seed: ${prepared.length} prepared in ${prepS.toFixed(1)} s (${(prepared.length / prepS).toFixed(0)}/s), `
    + `${enabled.length} enabled in ${enableS.toFixed(1)} s (${(enabled.length / enableS).toFixed(0)}/s), ${failed} enable failures`);
  for (const e of errors) console.error(`seed: ${e}`);
  console.log(`users=${enabled.length}`);
  if (enabled.length < 1) process.exit(1);
}

async function qr(base, secret, sub, email) {
  const r = await call('POST', `${base}/api/v1/me/mfa/totp/setup`, token(secret, sub, email));
  if (r.status !== 200) {
    console.log(`status=${r.status} body=${JSON.stringify(r.text.slice(0, 300))}`);
    process.exit(1);
  }
  const body = JSON.parse(r.text);
  const uri = body.qrCode || '';
  const m = /^data:image\/png;base64,(.*)$/.exec(uri);
  let png = 'n/a';
  let pngBytes = 0;
  if (m) {
    const buf = Buffer.from(m[1], 'base64');
    pngBytes = buf.length;
    if (buf.length > 26 && buf.toString('latin1', 12, 16) === 'IHDR') {
      const colour = { 0: 'grey', 2: 'RGB', 3: 'palette', 4: 'grey+alpha', 6: 'RGBA' }[buf[25]] || buf[25];
      png = `${buf.readUInt32BE(16)}x${buf.readUInt32BE(20)} depth=${buf[24]} colour=${colour}`;
    }
  }
  console.log(`qr_data_uri_bytes=${Buffer.byteLength(uri)} png_bytes=${pngBytes} png=${png} `
    + `uri_bytes=${Buffer.byteLength(body.otpauthUri || '')} status=${r.status}`);
}

const [cmd, ...a] = process.argv.slice(2);
(async () => {
  if (cmd === 'mint') {
    const [secret, count, prefix, email] = a;
    if (!prefix) throw new Error('usage: node tools.js mint SECRET COUNT PREFIX [EMAIL]');
    const lines = [];
    for (let i = 0; i < Number(count); i++) lines.push(token(secret, `${prefix}-${i}`, email));
    process.stdout.write(lines.join('\n') + '\n');
  } else if (cmd === 'seed') {
    const [base, secret, prefix, maxUsers, out, conc] = a;
    if (!out) throw new Error('usage: node tools.js seed BASE_URL SECRET PREFIX MAX_USERS OUT_FILE [CONC]');
    await seed(base.replace(/\/$/, ''), secret, prefix, Number(maxUsers), out, Number(conc || 16));
  } else if (cmd === 'qr') {
    const [base, secret, sub, email] = a;
    if (!email) throw new Error('usage: node tools.js qr BASE_URL SECRET SUB EMAIL');
    await qr(base.replace(/\/$/, ''), secret, sub, email);
  } else {
    throw new Error('usage: node tools.js mint|seed|qr ...');
  }
})().catch((e) => { console.error(e.message); process.exit(1); });
