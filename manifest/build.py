"""Fill the manifest template for one bot registration and write the Teams app package (zip)."""

from __future__ import annotations

import json
import re
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "manifest.template.json"
ICONS = ("color.png", "outline.png")
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
# A fixed timestamp keeps the zip byte-for-byte reproducible for the same inputs.
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


class ManifestError(ValueError):
    """The manifest cannot be built from the given inputs; the message says what to fix."""


def default_version() -> str:
    """The installed kebiao package version (the app version must change with every manifest change)."""
    try:
        return metadata.version("kebiao")
    except metadata.PackageNotFoundError:
        return "0.1.0"


HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+(?::\d{1,5})?$"
)
CONSOLE_TAB = "kebiao-console"


def console_tab(host: str) -> dict[str, Any]:
    """The personal tab "客标管理": the manager console, signed in with Teams SSO."""
    return {
        "entityId": CONSOLE_TAB,
        "name": "客标管理",
        "contentUrl": f"https://{host}/console/teams",
        "websiteUrl": f"https://{host}/console/",
        "scopes": ["personal"],
    }


def build_manifest(
    app_id: str, version: str | None = None, valid_domains: tuple[str, ...] = (), host: str | None = None
) -> dict[str, Any]:
    """The manifest for bot/app registration `app_id` (a GUID), with extra `valid_domains` appended.

    With `host` (where Kebiao is reached over HTTPS) it carries the console tab, and single sign-on for it
    through the resource `api://<host>/<app id>`.
    """
    app_id = app_id.strip()
    if not GUID.match(app_id):
        raise ManifestError(
            f"app id {app_id!r} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); "
            "use the Microsoft App ID of the Azure Bot registration (MICROSOFT_APP_ID or --app-id)"
        )
    version = version or default_version()
    if not SEMVER.match(version):
        raise ManifestError(f"app version {version!r} is not semantic versioning like 1.2.3")
    values = {"APP_ID": app_id.lower(), "VERSION": version}
    manifest = _fill(json.loads(TEMPLATE.read_text(encoding="utf-8")), values)
    for domain in valid_domains:
        if not domain or "/" in domain or " " in domain:
            raise ManifestError(f"valid domain {domain!r} must be a bare host name like bot.example.com")
        if domain not in manifest["validDomains"]:
            manifest["validDomains"].append(domain)
    if host:
        host = host.strip().lower()
        if not HOST.match(host):
            raise ManifestError(f"host {host!r} must be a bare host name like kebiao.contoso.cn (no https://, no path)")
        manifest["staticTabs"] = [console_tab(host)]
        manifest["webApplicationInfo"] = {"id": values["APP_ID"], "resource": f"api://{host}/{values['APP_ID']}"}
        bare = host.split(":")[0]
        if bare not in manifest["validDomains"]:
            manifest["validDomains"].append(bare)
    return manifest


def write_package(out_path: Path | str, app_id: str, version: str | None = None, host: str | None = None) -> Path:
    """Write the app package zip (manifest.json, color.png, outline.png) and return its path."""
    manifest = build_manifest(app_id, version, host=host)
    out = Path(out_path)
    if out.is_dir():
        raise ManifestError(f"output {out} is a directory; give a file name such as {out / 'kebiao.zip'}")
    if not out.parent.exists():
        raise ManifestError(f"output folder {out.parent} does not exist")
    missing = [name for name in ICONS if not (HERE / name).is_file()]
    if missing:
        raise ManifestError(f"icons missing in {HERE}: {missing}; run `python -m manifest.icons`")
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as package:
        _add(package, "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"))
        for name in ICONS:
            _add(package, name, (HERE / name).read_bytes())
    tmp.replace(out)  # never leave a half-written package behind
    return out


def _add(package: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    package.writestr(info, data)


def _fill(node: Any, values: dict[str, str]) -> Any:
    """Replace {{NAME}} placeholders in every string of the template."""
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: _value(m.group(1), values), node)
    return node


def _value(name: str, values: dict[str, str]) -> str:
    if name not in values:
        raise ManifestError(f"manifest template uses unknown placeholder {{{{{name}}}}}")
    return values[name]
