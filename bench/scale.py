#!/usr/bin/env python3
"""Request files for bench/scale.sh (stdlib only).

  scale.py tokens SECRET COUNT PREFIX        one HS256 token per line, subs PREFIX0..PREFIX{COUNT-1}
  scale.py verify SECRET USERS SAMPLE SEED   "TOKEN CODE" lines for SAMPLE random users of
                                             seed0..seed{USERS-1} (examples/seed.rs secrets):
                                             first every user's code for the current step, then
                                             every user's code for the next one (each succeeds once)
"""
import base64, hashlib, hmac, json, random, struct, sys, time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: bytes, sub: str) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    now = int(time.time())
    claims = {"sub": sub, "email": f"{sub}@example.com", "iat": now, "exp": now + 3600}
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def code(key: bytes, step: int) -> str:
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def main() -> None:
    cmd, secret = sys.argv[1], sys.argv[2].encode()
    if cmd == "tokens":
        count, prefix = int(sys.argv[3]), sys.argv[4]
        for i in range(count):
            print(token(secret, f"{prefix}{i}"))
    elif cmd == "verify":
        users, sample, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        rng = random.Random(seed)
        chosen = rng.sample(range(users), min(sample, users))
        step = int(time.time()) // 30
        lines = []
        for offset in (0, 1):
            for i in chosen:
                key = hashlib.sha256(f"twofold-seed:{i}".encode()).digest()[:20]
                lines.append(f"{token(secret, f'seed{i}')} {code(key, step + offset)}")
        print("\n".join(lines))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
