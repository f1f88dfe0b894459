"""Issue 15 over a real server: /metrics scraped and parsed with prometheus_client's own
parser, its values equal to `stats --json` (a real subprocess on the same repository) and to
the repository's files; the token enforced unless --metrics-public; the stats endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from metrics_helpers import nb, samples

REPO = Path(__file__).resolve().parents[2]


def pack_bytes(root: Path, project: str) -> int:
    packs = root / "backups" / project / "packs"
    return sum(p.stat().st_size for p in packs.rglob("*") if p.is_file())


def test_a_scrape_says_what_stats_and_the_repository_say(make_api, sample_tree, backup_via):
    api = make_api()
    tree = sample_tree(api.allowed / "src")
    with api.client() as c:
        first = backup_via(c, "web", tree)
        (tree / "added.txt").write_text("new content\n" * 50)
        second = backup_via(c, "web", tree, backup_type="incremental")
        assert first["status"] == second["status"] == "completed"
        verified = nb(api.root, "verify", "web", "latest")
        assert verified.returncode == 0, verified.stderr
        scrape = c.get("/metrics")
        api_stats = c.get("/api/v1/projects/web/stats").json()
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    got = samples(scrape.text)
    cli = nb(api.root, "stats", "web", "--json")
    assert cli.returncode == 0, cli.stderr
    stats = json.loads(cli.stdout)
    assert api_stats == stats  # the endpoint and the command say the same
    t = stats["totals"]
    web = frozenset({("project", "web")})

    def value(name: str, **labels: str) -> float:
        return got[(name, web | frozenset(labels.items()))]

    assert value("nexus_project_stored_bytes") == t["stored_bytes"] == pack_bytes(api.root, "web")
    assert value("nexus_project_logical_bytes") == t["logical_bytes"]
    assert t["logical_bytes"] == first["size_bytes"] + second["size_bytes"]
    assert value("nexus_backup_read_bytes_total") == t["bytes_read"]
    assert value("nexus_backup_stored_new_bytes_total") == t["bytes_stored_new"]
    assert value("nexus_backups", status="completed") == 2
    assert value("nexus_backups", status="failed") == 0
    assert value("nexus_backup_last_status", status="completed") == 1
    assert value("nexus_backup_last_duration_seconds") == t["last_duration_seconds"]
    last_ok = value("nexus_backup_last_success_timestamp_seconds")
    assert abs(last_ok - _epoch(t["last_success_at"])) < 1e-3
    assert value("nexus_backup_duration_seconds_count") == 2
    durations = [r["duration_seconds"] for r in stats["backups"]]
    assert abs(value("nexus_backup_duration_seconds_sum") - sum(durations)) < 1e-9
    assert value("nexus_backup_duration_seconds_bucket", le="+Inf") == 2
    assert value("nexus_verify_last_success") == 1
    assert abs(value("nexus_verify_last_timestamp_seconds") - _epoch(t["last_verify_at"])) < 1e-3
    # the two creates this server ran (the verify ran in another process)
    assert value("nexus_operations_total", kind="create", result="success") == 2
    # the store's requests, by kind: the backups put packs, the scrape listed them
    kinds = {
        dict(labels)["kind"] for (name, labels) in got if name == "nexus_storage_requests_total"
    }
    assert {"put", "get", "list"} <= kinds
    puts = got[
        ("nexus_storage_requests_total", frozenset({("kind", "put"), ("result", "success")}))
    ]
    assert puts > 0
    assert (
        got[("nexus_storage_request_duration_seconds_count", frozenset({("kind", "put")}))] == puts
    )
    # never a backup id or a path in a label
    for _name, labels in got:
        assert {k for k, _v in labels} <= {"project", "status", "kind", "result", "le"}


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_metrics_need_the_token_unless_public(make_api):
    api = make_api()
    with api.client(token=None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with api.client(token="wrong-token-0123456789abcdef") as wrong:
        assert wrong.get("/metrics").status_code == 401
    with api.client() as c:
        assert c.get("/metrics").status_code == 200
    public = make_api(metrics_public=True)
    with public.client(token=None) as anonymous:
        r = anonymous.get("/metrics")
        assert r.status_code == 200 and "nexus_operations_total" in r.text
        # only /metrics: the API itself still wants the token
        assert anonymous.get("/api/v1/projects").status_code == 401


def test_stats_endpoint_refuses_bad_input(api, client):
    r = client.get("/api/v1/projects/nosuch/stats")
    assert r.status_code == 404
    r = client.get("/api/v1/projects/nosuch/stats", params={"since": "the day after"})
    assert r.status_code == 422 and "since" in json.dumps(r.json())
    with api.client(token=None) as anonymous:
        assert anonymous.get("/api/v1/projects/nosuch/stats").status_code == 401
