"""The compare-and-search endpoints (issue 17) on a real server: diff, find, ls and the file
download, with the token required, bounded answers, and in-backup paths that cannot escape."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest
from conftest_of import conftest_of

_h = conftest_of(__file__)
Api, create_backup, write_sample_tree = _h.Api, _h.create_backup, _h.write_sample_tree

ODD = b"odd-\xff-name"


@pytest.fixture(scope="module")
def backups(api: Api) -> tuple[str, str, Path]:
    """Two backups of one tree in the allowed directory: a, then b after changes."""
    top = write_sample_tree(api.allowed / "compare-data")
    with open(os.path.join(os.fsencode(top), ODD), "wb") as f:
        f.write(b"odd bytes\n")
    for i in range(30):
        (top / f"many-{i:02}.txt").write_text(f"{i}\n")
    with api.client() as c:
        a = create_backup(c, "cmp", top)["id"]
        (top / "hello.txt").write_text("hello, changed world\n")
        (top / "sub" / "random.bin").unlink()
        (top / "added.txt").write_text("new\n")
        for i in range(30):
            (top / f"many-{i:02}.txt").write_text(f"{i} changed\n")
        b = create_backup(c, "cmp", top)["id"]
    return a, b, top


def test_diff_lists_changes_with_totals_and_pages(client: httpx.Client, backups):
    a, b, _top = backups
    r = client.get(f"/api/v1/backup/diff/cmp/{a}/{b}")
    assert r.status_code == 200, r.text
    body = r.json()
    by_path = {c["path"]: c for c in body["changes"]}
    assert by_path["hello.txt"]["changes"][:2] == ["content", "size"]
    assert by_path["sub/random.bin"]["status"] == "removed"
    assert by_path["added.txt"]["status"] == "added"
    total = body["totals"]["added"] + body["totals"]["removed"] + body["totals"]["changed"]
    assert len(body["changes"]) == total and not body["truncated"]
    page = client.get(f"/api/v1/backup/diff/cmp/{a}/{b}", params={"limit": 10, "offset": 5})
    assert page.status_code == 200
    assert page.json()["truncated"] and page.json()["changes"] == body["changes"][5:15]
    assert page.json()["totals"] == body["totals"]
    narrowed = client.get(f"/api/v1/backup/diff/cmp/{a}/latest", params={"path": "sub"}).json()
    assert [c["path"] for c in narrowed["changes"]] == ["sub", "sub/random.bin"]


def test_find_and_ls_and_download(client: httpx.Client, backups):
    a, b, top = backups
    found = client.get("/api/v1/backup/find/cmp", params={"q": "hello.txt"}).json()
    [hit] = [h for h in found["hits"] if h["path"] == "hello.txt"]
    assert [v["newest"] for v in hit["versions"]] == [b, a]
    odd = client.get("/api/v1/backup/find/cmp", params={"q": "odd-"}).json()["hits"]
    assert base64.b64decode(odd[0]["path_b64"]) == ODD and odd[0]["versions"][0]["backups"] == 2
    cut = client.get("/api/v1/backup/find/cmp", params={"q": "many-*", "limit": 3}).json()
    assert len(cut["hits"]) == 3 and cut["truncated"]

    listing = client.get(f"/api/v1/backup/ls/cmp/{b}", params={"path": "sub"}).json()
    assert [e["name"] for e in listing["entries"]] == ["deeper", "ünïcödé name.txt"]
    assert listing["entries"][0]["files"] == 1 and listing["entries"][0]["size"] == 70_000
    paged = client.get(f"/api/v1/backup/ls/cmp/{b}", params={"limit": 2}).json()
    assert len(paged["entries"]) == 2 and paged["truncated"]

    r = client.get(f"/api/v1/backup/file/cmp/{a}", params={"path": "sub/random.bin"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == 300_000 and r.headers["content-length"] == "300000"
    r = client.get(
        f"/api/v1/backup/file/cmp/{b}", params={"path_b64": base64.b64encode(ODD).decode()}
    )
    assert r.status_code == 200 and r.content == (top.joinpath(os.fsdecode(ODD))).read_bytes()
    r = client.get(f"/api/v1/backup/file/cmp/{b}", params={"path": "sub/ünïcödé name.txt"})
    assert r.content == "ação\n".encode()
    assert "filename*=UTF-8''" in r.headers["content-disposition"]


@pytest.mark.parametrize(
    ("url", "params", "status", "kind"),
    [
        ("/api/v1/backup/diff/cmp/latest/live", {}, 422, "value_error"),
        ("/api/v1/backup/diff/cmp/latest/20200101-000000-abcdef", {}, 404, "not_found"),
        ("/api/v1/backup/diff/nope/latest/latest", {}, 404, "not_found"),
        ("/api/v1/backup/diff/cmp/latest/latest", {"path": "../../etc"}, 422, "invalid_input"),
        ("/api/v1/backup/ls/cmp/latest", {"path": "sub/../.."}, 422, "invalid_input"),
        ("/api/v1/backup/ls/cmp/latest", {"path": "nope"}, 404, "not_found"),
        ("/api/v1/backup/file/cmp/latest", {"path": "sub"}, 422, "invalid_input"),
        ("/api/v1/backup/file/cmp/latest", {"path": "link-to-hello"}, 422, "invalid_input"),
        ("/api/v1/backup/file/cmp/latest", {"path": "/etc/passwd"}, 404, "not_found"),
        ("/api/v1/backup/file/cmp/latest", {"path_b64": "not base64!"}, 422, "value_error"),
        ("/api/v1/backup/find/cmp", {"q": ""}, 422, None),
        ("/api/v1/backup/diff/cmp/latest/latest", {"limit": 10**6}, 422, None),
    ],
)
def test_bad_requests_are_refused_with_a_reason(client, backups, url, params, status, kind):
    r = client.get(url, params=params)
    assert r.status_code == status, r.text
    if kind is not None:
        assert r.json()["detail"][0]["type"] == kind, r.text


def test_every_compare_endpoint_needs_the_token(api: Api, backups):
    a, b, _top = backups
    with api.client(token=None) as anonymous:
        for url in (
            f"/api/v1/backup/diff/cmp/{a}/{b}",
            "/api/v1/backup/find/cmp?q=hello",
            f"/api/v1/backup/ls/cmp/{b}",
            f"/api/v1/backup/file/cmp/{b}?path=hello.txt",
        ):
            assert anonymous.get(url).status_code == 401, url
