"""Install logic: the Makefile installs torch from the CPU index first, and the wheel installs
one import package ``nasrank`` (never top-level ``spaces``, ``search``...)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(*variables: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-B", "setup", "VENV=/nonexistent-venv", *variables],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if "pip install" in ln]


def test_makefile_installs_cpu_torch_before_the_package():
    lines = _dry_run()
    torch_line = next(i for i, ln in enumerate(lines) if "torch==" in ln)
    pkg_line = next(i for i, ln in enumerate(lines) if '-e ".[dev]"' in ln)
    assert torch_line < pkg_line
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[torch_line]
    # never a bare `pip install torch` from the default index (PyPI serves the CUDA build)
    assert all("--index-url" in ln for ln in lines if "torch" in ln and "[dev]" not in ln)


def test_makefile_takes_the_index_the_user_names():
    lines = _dry_run("TORCH_INDEX=https://example.invalid/whl/cu124", "TORCH_SPEC=torch")
    torch_line = next(ln for ln in lines if '"torch"' in ln)
    assert "--index-url https://example.invalid/whl/cu124" in torch_line
    assert "whl/cpu" not in torch_line


@pytest.mark.slow
def test_wheel_holds_only_the_nasrank_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("nasrank-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"nasrank"}
    for mod in ("nasrank/spaces/nb201.py", "nasrank/spaces/networks/nb201.py",
                "nasrank/supernet/trainer.py",
                "nasrank/predictor/model.py", "nasrank/search/cli.py", "nasrank/errors.py",
                "nasrank/py.typed"):
        assert mod in names
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
    # installed on its own (outside the checkout): nasrank.spaces imports, spaces does not
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import nasrank, nasrank.spaces, importlib.util as u; "
            "assert nasrank.spaces.__file__.startswith(%r), nasrank.spaces.__file__; "
            "assert u.find_spec('spaces') is None and u.find_spec('search') is None; "
            "from nasrank.spaces import get_space; print(get_space('nb201').name)") % str(target)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "nb201"


def test_supported_python_versions_agree_with_the_metadata():
    """3.11 is the lowest (the CLI reads TOML with tomllib), 3.13 the newest tested (issue 19);
    the convert APIs are an optional extra, never a requirement."""
    import re
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"
    versions = [c.rsplit(" ", 1)[1] for c in meta["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions == ["3.11", "3.12", "3.13"]
    assert sys.version_info >= (3, 11)
    extra = meta["optional-dependencies"]["convert"]
    assert {re.split(r"[<>=]", d)[0] for d in extra} == {"nats-bench", "nas-bench-201"}
    assert not any(d.startswith(("nats-bench", "nas-bench-201")) for d in meta["dependencies"])
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.11" in readme and "3.13" in readme
