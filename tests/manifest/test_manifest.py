"""Teams manifest: official schema (offline), ids and scopes, icons read from PNG headers, zip, CLI."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from manifest.build import ManifestError, build_manifest, write_package
from manifest.icons import color_icon, outline_icon

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "schemas" / "teams-manifest-1.25.json"
APP_ID = "0d9e3c1a-1b2c-4d5e-8f90-123456789abc"


def _png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, colour type, raw scanlines) of an 8-bit, filter-0 PNG as written by manifest.icons."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    assert depth == 8
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * (4 if color_type == 6 else 3) + 1
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, color_type, [row[1:] for row in rows]


def test_manifest_matches_official_schema() -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"Teams manifest schema v1.25 not found at {SCHEMA} (optional reference folder)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    manifest = build_manifest(APP_ID, "1.2.3")
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(manifest))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    assert manifest["$schema"].endswith("/v1.25/MicrosoftTeams.schema.json")
    assert manifest["manifestVersion"] == "1.25"


def test_manifest_content() -> None:
    manifest = build_manifest(APP_ID.upper(), "1.2.3", valid_domains=("kebiao.contoso.cn",))
    bot = manifest["bots"][0]
    assert manifest["id"] == bot["botId"] == manifest["composeExtensions"][0]["botId"] == APP_ID
    assert manifest["webApplicationInfo"] == {"id": APP_ID, "resource": f"api://botid-{APP_ID}"}
    assert sorted(bot["scopes"]) == ["groupChat", "personal", "team"]
    commands = {c["title"] for c in bot["commandLists"][0]["commands"]}
    assert commands == {"help", "tags", "tag", "find", "link", "unlink", "suggest", "prep", "mytag"}
    by_id = {c["id"]: c for c in manifest["composeExtensions"][0]["commands"]}
    assert by_id["searchCustomers"]["type"] == "query" and by_id["searchCustomers"]["initialRun"] is True
    assert by_id["searchCustomers"]["parameters"][0]["name"] == "query"
    assert by_id["tagFromMessage"]["type"] == "action" and by_id["tagFromMessage"]["context"] == ["message"]
    assert by_id["tagFromMessage"]["fetchTask"] is True
    assert "客标" in manifest["description"]["full"]
    assert "kebiao.contoso.cn" in manifest["validDomains"]
    assert "{{" not in json.dumps(manifest)


def test_manifest_asks_for_resource_specific_consent_to_read_linked_conversations() -> None:
    # Without RSC, Teams delivers only @mentions from group chats and channels: a linked conversation's
    # customer messages would never reach the matcher.
    manifest = build_manifest(APP_ID, "1.2.3")
    permissions = manifest["authorization"]["permissions"]["resourceSpecific"]
    assert {(p["name"], p["type"]) for p in permissions} == {
        ("ChannelMessage.Read.Group", "Application"),
        ("ChatMessage.Read.Chat", "Application"),
        # Meeting start/end events reach the bot of a meeting chat only with this permission (meeting prep).
        ("OnlineMeeting.ReadBasic.Chat", "Application"),
    }
    # RSC is granted to the AAD app named here, which must be the bot's own registration.
    assert manifest["webApplicationInfo"]["id"] == manifest["bots"][0]["botId"] == APP_ID
    assert {"team", "groupChat"} <= set(manifest["bots"][0]["scopes"])


@pytest.mark.parametrize("bad", ["", "客标", "0d9e3c1a1b2c4d5e8f90123456789abc", APP_ID + "0", "{" + APP_ID + "}"])
def test_bad_app_id_is_refused(bad: str) -> None:
    with pytest.raises(ManifestError, match="not a GUID"):
        build_manifest(bad)


def test_colour_icon_is_opaque_192() -> None:
    committed = (ROOT / "manifest" / "color.png").read_bytes()
    assert committed == color_icon()  # the committed file is what the generator draws
    width, height, color_type, rows = _png(committed)
    assert (width, height, color_type) == (192, 192, 2)  # RGB: no alpha channel, so fully opaque
    assert len({row[i : i + 3] for row in rows for i in range(0, len(row), 3)}) > 2


def test_outline_icon_is_white_on_transparent_32() -> None:
    committed = (ROOT / "manifest" / "outline.png").read_bytes()
    assert committed == outline_icon()
    width, height, color_type, rows = _png(committed)
    assert (width, height, color_type) == (32, 32, 6)
    pixels = [row[i : i + 4] for row in rows for i in range(0, len(row), 4)]
    assert all(p[:3] == b"\xff\xff\xff" for p in pixels)  # white only; shape lives in alpha
    alphas = {p[3] for p in pixels}
    assert 0 in alphas and 255 in alphas


def test_package_zip(tmp_path: Path) -> None:
    out = write_package(tmp_path / "客标.zip", APP_ID, "0.2.0")
    with zipfile.ZipFile(out) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest: dict[str, Any] = json.loads(package.read("manifest.json"))
    assert manifest["version"] == "0.2.0" and manifest["id"] == APP_ID
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ManifestError, match="directory"):
        write_package(tmp_path, APP_ID)


def _kebiao(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROSOFT_", "KEBIAO_"))}
    env["PYTHONPATH"] = str(ROOT)
    helped = _kebiao("manifest", "build", "--help", cwd=tmp_path, env=env)
    assert helped.returncode == 0 and "--app-id" in helped.stdout and "--out" in helped.stdout
    missing = _kebiao("manifest", "build", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "MICROSOFT_APP_ID" in missing.stderr
    bad = _kebiao("manifest", "build", "--app-id", "不是GUID", cwd=tmp_path, env=env)
    assert bad.returncode == 1 and "not a GUID" in bad.stderr
    assert not (tmp_path / "kebiao.zip").exists()
    ok = _kebiao("manifest", "build", "--app-id", APP_ID, "--out", "pkg.zip", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert zipfile.ZipFile(tmp_path / "pkg.zip").namelist()
    from_env = _kebiao("manifest", "build", cwd=tmp_path, env={**env, "MICROSOFT_APP_ID": APP_ID})
    assert from_env.returncode == 0, from_env.stderr
    assert (tmp_path / "kebiao.zip").is_file()


def test_manifest_with_console_tab_matches_official_schema() -> None:
    manifest = build_manifest(APP_ID, "1.2.3", host="kebiao.contoso.cn")
    assert manifest["staticTabs"] == [
        {
            "entityId": "kebiao-console",
            "name": "客标管理",
            "contentUrl": "https://kebiao.contoso.cn/console/teams",
            "websiteUrl": "https://kebiao.contoso.cn/console/",
            "scopes": ["personal"],
        }
    ]
    assert manifest["webApplicationInfo"] == {"id": APP_ID, "resource": f"api://kebiao.contoso.cn/{APP_ID}"}
    assert "kebiao.contoso.cn" in manifest["validDomains"]
    if not SCHEMA.is_file():
        pytest.skip(f"Teams manifest schema v1.25 not found at {SCHEMA} (optional reference folder)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(manifest))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize("host", ["https://kebiao.contoso.cn", "kebiao.contoso.cn/console", "bad host", "-x.cn"])
def test_manifest_refuses_a_host_that_is_not_a_bare_name(host: str) -> None:
    with pytest.raises(ManifestError, match="bare host name"):
        build_manifest(APP_ID, "1.2.3", host=host)


def test_cli_builds_the_package_with_the_tab(tmp_path: Path) -> None:
    out = tmp_path / "kebiao.zip"
    env = {**os.environ, "MICROSOFT_APP_ID": APP_ID, "KEBIAO_PUBLIC_HOST": "kebiao.contoso.cn"}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "manifest", "build", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as package:
        manifest = json.loads(package.read("manifest.json"))
    assert manifest["staticTabs"][0]["contentUrl"] == "https://kebiao.contoso.cn/console/teams"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "manifest", "build", "--out", str(out), "--host", "https://x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1 and "bare host name" in done.stderr
