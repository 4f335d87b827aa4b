"""End to end: `nasrank run` with tiny settings writes every output; a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--supernet-epochs", "1", "--archs", "40", "--pretrain-epochs", "2", "--budget", "4",
        "--method.rounds", "2", "--epochs", "1", "--supernet.channels", "4", "--image-size", "8"]
PNG = b"\x89PNG\r\n\x1a\n"


def nasrank(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nasrank.search.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def data_rows(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [ln for ln in lines[1:] if ln.strip()]  # header


@pytest.mark.slow
def test_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    p = nasrank("run", "--out", str(out), "--proxies", "synflow", *TINY)
    stdout, _ = p.communicate(timeout=480)
    assert p.returncode == 0, stdout
    for name in ("config.json", "supernet/supernet.pt", "weak_labels.csv", "predictor.pt",
                 "search.jsonl", "random.jsonl", "results.json", "queries.csv"):
        assert (out / name).is_file(), name
    for name in ("predicted_vs_true.png", "best_so_far.png", "weak_label_correlation.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    header = (out / "weak_labels.csv").read_text().splitlines()[0].split(",")
    assert header == ["key", "arch", "ws_acc", "ws_neg_loss", "flops", "params", "zc_synflow",
                      "note"]
    assert len(data_rows(out / "weak_labels.csv")) == 40
    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]) == {"predictor search", "random"}
    for m in res["methods"].values():
        assert m["queries"] == 4 and 0.0 <= m["best_valid_acc"] <= 1.0
        assert len(m["best_so_far"]) == 4
        assert m["best_so_far"] == sorted(m["best_so_far"])  # best-so-far never decreases
    queries = (out / "queries.csv").read_text().splitlines()
    assert len(queries) == 1 + 8
    assert "best valid acc" in stdout and "random" in stdout


@pytest.mark.slow
def test_killed_run_resumes_instead_of_restarting(tmp_path):
    out = tmp_path / "run"
    p = nasrank("run", "--out", str(out), "--proxies", "", *TINY)
    labels = out / "weak_labels.csv"
    deadline = time.time() + 300
    while len(data_rows(labels)) < 16 and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGKILL)
    p.wait()
    kept = data_rows(labels)
    assert 16 <= len(kept) < 40
    ckpt = out / "supernet" / "supernet.pt"
    ckpt_bytes = ckpt.read_bytes()

    p = nasrank("run", "--out", str(out), "--proxies", "", *TINY)
    stdout, _ = p.communicate(timeout=480)
    assert p.returncode == 0, stdout
    rows = data_rows(labels)
    assert rows[: len(kept)] == kept          # earlier rows kept, not recomputed
    assert len(rows) == 40 and len({r.split(",")[0] for r in rows}) == 40
    assert ckpt.read_bytes() == ckpt_bytes    # the finished supernet was not retrained

    # different settings in the same folder are refused, nothing changed
    p = nasrank("run", "--out", str(out), "--proxies", "", *TINY[:-2], "--image-size", "10")
    stdout, _ = p.communicate(timeout=120)
    assert p.returncode == 2
    assert stdout.strip().splitlines()[-1].startswith("nasrank: error:") and "image_size" in stdout
    assert data_rows(labels) == rows
