"""docs/architecture.md is the repository's design doc: docstrings cite it (not a file outside the
repository), and it names every registry and every registered entry, so it stays current."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def test_no_module_cites_a_design_file_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for pkg in ("nasrank", "spaces", "supernet", "predictor",
                                                       "search")
                 for p in (ROOT / pkg).rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert offenders == []
    assert DOC.is_file()


def test_architecture_doc_names_every_registry_and_entry():
    from nasrank.predictor.registry import RANKING_LOSSES
    from nasrank.search.registry import COMMANDS, SEARCH_METHODS
    from nasrank.spaces.registry import BENCHMARKS, SPACES
    from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS

    text = DOC.read_text()
    registries = {"SPACES": SPACES, "BENCHMARKS": BENCHMARKS, "SUPERNETS": SUPERNETS,
                  "SAMPLERS": SAMPLERS, "STEP_STRATEGIES": STEP_STRATEGIES,
                  "RANKING_LOSSES": RANKING_LOSSES, "SEARCH_METHODS": SEARCH_METHODS,
                  "COMMANDS": COMMANDS}
    for name, reg in registries.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} has no row in docs/architecture.md"
        listed = {tok.strip().split(" ")[0].strip("`") for tok in row.split("|")[-2].split(",")}
        missing = [e for e in reg.names() if e not in listed]
        assert not missing, f"{name} entries {missing} are not listed in docs/architecture.md"
