"""`make teams-package`: the Teams app package, a zip of `manifest.json` and the two icons, ready to
upload (Teams admin center › Manage apps › Upload, or Apps › Manage your apps › Upload an app).

The manifest's placeholders are filled from the settings (environment or `.env`): the bot's id from
MICROSOFT_APP_ID (it is also the app's id), the developer pages from PUBLIC_BASE_URL."""

import json
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
ICONS = {"color.png": (192, 192), "outline.png": (32, 32)}


class PackageError(ValueError):
    pass


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PackageError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def manifest(app_id: str | None, public_base_url: str | None) -> dict:
    if not app_id or not GUID.match(app_id):
        raise PackageError("MICROSOFT_APP_ID must be set to the bot's Microsoft App ID (a GUID)")
    base = (public_base_url or "").rstrip("/")
    if not base.startswith("https://"):
        raise PackageError("PUBLIC_BASE_URL must be set to the bot's https address")
    text = (HERE / "manifest.json").read_text(encoding="utf-8")
    text = text.replace("{{MICROSOFT_APP_ID}}", app_id.lower()).replace("{{PUBLIC_BASE_URL}}", base)
    return json.loads(text)


def build(out: Path, app_id: str | None, public_base_url: str | None) -> Path:
    document = manifest(app_id, public_base_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(document, indent=2, ensure_ascii=False))
        for name, size in ICONS.items():
            data = (HERE / name).read_bytes()
            if png_size(data) != size:
                raise PackageError(f"{name} must be {size[0]}x{size[1]} pixels")
            package.writestr(name, data)
    return out


def main(argv: list[str]) -> int:
    from bot.runtime.settings import Settings

    settings = Settings()
    out = Path(argv[1]) if len(argv) > 1 else Path("dist/cda-bot-teams.zip")
    try:
        written = build(out, settings.microsoft_app_id, settings.public_base_url)
    except PackageError as error:
        print(f"teams-package: {error}", file=sys.stderr)
        return 1
    print(f"{written} (upload it in Teams: Apps › Manage your apps › Upload an app)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
