"""`make teams-package`: a zip Teams accepts — the manifest with the bot's id and the pages filled in,
personal, team and group chat scopes, the commands listed, and icons of the sizes Teams asks for."""

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "11111111-2222-4333-8444-555555555555"


def _package_module():
    spec = importlib.util.spec_from_file_location("teams_package", ROOT / "teams" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_holds_a_filled_manifest_and_both_icons(tmp_path: Path) -> None:
    package = _package_module()
    out = package.build(tmp_path / "cda-bot-teams.zip", APP_ID.upper(), "https://cda-bot.example.org/")
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        assert package.png_size(archive.read("color.png")) == (192, 192)
        assert package.png_size(archive.read("outline.png")) == (32, 32)
    assert "{{" not in json.dumps(manifest)
    assert manifest["id"] == APP_ID and manifest["bots"][0]["botId"] == APP_ID
    assert manifest["developer"]["privacyUrl"] == "https://cda-bot.example.org/privacy"
    bot = manifest["bots"][0]
    assert sorted(bot["scopes"]) == ["groupChat", "personal", "team"]
    titles = [c["title"] for c in bot["commandLists"][0]["commands"]]
    assert "/cda status" in titles and "update:" in titles and len(titles) <= 10
    assert all(len(t) <= 32 for t in titles)
    assert all(len(c["description"]) <= 128 for c in bot["commandLists"][0]["commands"])
    assert len(manifest["name"]["short"]) <= 30 and len(manifest["description"]["short"]) <= 80


@pytest.mark.parametrize(
    ("app_id", "base", "message"),
    [
        (None, "https://x.example.org", "MICROSOFT_APP_ID must be set"),
        ("not-a-guid", "https://x.example.org", "MICROSOFT_APP_ID must be set"),
        (APP_ID, None, "PUBLIC_BASE_URL must be set"),
        (APP_ID, "http://x.example.org", "PUBLIC_BASE_URL must be set"),
    ],
)
def test_a_package_without_its_ids_is_refused(
    tmp_path: Path, app_id: str | None, base: str | None, message: str
) -> None:
    package = _package_module()
    with pytest.raises(package.PackageError, match=message):
        package.build(tmp_path / "p.zip", app_id, base)
    assert not (tmp_path / "p.zip").exists()


def test_the_script_reads_the_settings_and_says_where_the_zip_is(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MICROSOFT_APP_ID": APP_ID, "PUBLIC_BASE_URL": "https://cda.example.org"}
    out = tmp_path / "dist" / "cda-bot-teams.zip"
    done = subprocess.run(
        [sys.executable, str(ROOT / "teams" / "package.py"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout and out.exists()
    missing = subprocess.run(
        [sys.executable, str(ROOT / "teams" / "package.py"), str(out)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
