"""restic itself, as the oracle of the retention rules: a local restic repository in a tmp dir,
backups made with `restic backup --time`, and `restic forget --dry-run --json` asked which it
keeps.

Each restic process spends about half a second deriving its key (scrypt, with the parameters
`restic init` calibrated). So that hypothesis can ask restic about many random sets, the
repository's key file is replaced, once, by one wrapping the same master key under cheap scrypt
parameters, and `snapshot` writes a snapshot object the way restic does (AES-256-CTR and
Poly1305-AES, named by its SHA-256), reusing the tree of a real `restic backup`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

RESTIC = shutil.which("restic") or "/usr/bin/restic"
PASSWORD = "retention-oracle"


def available() -> bool:
    return os.path.exists(RESTIC)


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _mac(k: bytes, r: bytes, nonce: bytes, msg: bytes) -> bytes:
    """restic's Poly1305-AES: r clamped (Poly1305 does it), s = AES_k(nonce)."""
    return Poly1305.generate_tag(r + _aes_ecb(k, nonce), msg)


def _seal(keys: tuple[bytes, bytes, bytes], plaintext: bytes) -> bytes:
    enc_key, mac_k, mac_r = keys
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(enc_key), modes.CTR(iv)).encryptor()
    ct = enc.update(plaintext) + enc.finalize()
    return iv + ct + _mac(mac_k, mac_r, iv, ct)


def _open(keys: tuple[bytes, bytes, bytes], sealed: bytes) -> bytes:
    enc_key, mac_k, mac_r = keys
    iv, ct, tag = sealed[:16], sealed[16:-16], sealed[-16:]
    if _mac(mac_k, mac_r, iv, ct) != tag:
        raise ValueError("restic object does not authenticate")
    dec = Cipher(algorithms.AES(enc_key), modes.CTR(iv)).decryptor()
    return dec.update(ct) + dec.finalize()


def _user_keys(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes, bytes]:
    raw = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=64, maxmem=1 << 30)
    return raw[:32], raw[32:48], raw[48:64]


class ResticRepo:
    """A restic repository under `path`; all times are UTC (TZ=UTC for every restic run)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path / "data-dir"
        self.data.mkdir(parents=True)
        (self.data / "f").write_text("x")
        self.env = {
            **os.environ,
            "RESTIC_REPOSITORY": str(path / "repo"),
            "RESTIC_PASSWORD": PASSWORD,
            "TZ": "UTC",
            "RESTIC_CACHE_DIR": str(path / "cache"),
        }
        self._written: list[Path] = []
        self._run("init")
        self.master = self._cheapen_key()
        first = self.backup(datetime(2000, 1, 1, tzinfo=UTC), host="seed")
        self.tree = first["tree"]

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [RESTIC, "--no-cache", *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"restic {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _cheapen_key(self) -> tuple[bytes, bytes, bytes]:
        keys_dir = self.path / "repo" / "keys"
        [key_file] = list(keys_dir.iterdir())
        key = json.loads(key_file.read_text())
        salt = base64.b64decode(key["salt"])
        user = _user_keys(PASSWORD, salt, key["N"], key["r"], key["p"])
        master_json = _open(user, base64.b64decode(key["data"]))
        master = json.loads(master_json)
        cheap = dict(key, N=1024, r=8, p=1)
        cheap["data"] = base64.b64encode(
            _seal(_user_keys(PASSWORD, salt, 1024, 8, 1), master_json)
        ).decode()
        raw = json.dumps(cheap).encode()
        (keys_dir / hashlib.sha256(raw).hexdigest()).write_bytes(raw)
        key_file.unlink()
        return (
            base64.b64decode(master["encrypt"]),
            base64.b64decode(master["mac"]["k"]),
            base64.b64decode(master["mac"]["r"]),
        )

    def backup(self, when: datetime, *, host: str = "h", tags: list[str] = ()) -> dict:
        """A real `restic backup --time` of a one-file directory; its snapshot as JSON."""
        args = ["backup", "--json", "--host", host, "--time", f"{when:%Y-%m-%d %H:%M:%S}"]
        for tag in tags:
            args += ["--tag", tag]
        self._run(*args, str(self.data))
        return self.snapshots(host)[-1]

    def snapshot(self, when: datetime, *, host: str = "h", tags: list[str] = ()) -> None:
        """A snapshot object written as restic writes one (same tree as the seed backup)."""
        body = {
            "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "tree": self.tree,
            "paths": [str(self.data)],
            "hostname": host,
            "username": "test",
        }
        if tags:
            body["tags"] = list(tags)
        sealed = _seal(self.master, json.dumps(body).encode())
        name = hashlib.sha256(sealed).hexdigest()
        path = self.path / "repo" / "snapshots" / name
        path.write_bytes(sealed)
        self._written.append(path)

    def clear(self) -> None:
        """Remove the snapshots `snapshot` wrote (the seed backup stays)."""
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written.clear()

    def snapshots(self, host: str) -> list[dict]:
        return json.loads(self._run("snapshots", "--json", "--host", host)) or []

    def forget_kept(self, flags: list[str], host: str = "h") -> set[datetime]:
        """The times of the snapshots `restic forget --dry-run` keeps for `host`."""
        args = ["forget", "--no-lock", "--dry-run", "--json", "--host", host, *flags]
        out = json.loads(self._run(*args))
        kept: set[datetime] = set()
        for group in out or []:
            kept |= {_parse(s["time"]) for s in group["keep"] or []}
        return kept


def _parse(text: str) -> datetime:
    """restic's RFC 3339 time with nanoseconds, to a UTC datetime (microseconds)."""
    head, _, rest = text.partition(".")
    if not rest:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    frac = "".join(c for c in rest if c.isdigit())
    zone = rest[len(frac) :]
    micro = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micro}{zone.replace('Z', '+00:00')}").astimezone(UTC)
