"""The registry and its configs: values are checked and coerced whatever made them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from nasrank.errors import ConfigError
from nasrank.registry import Config, Registry, field_specs, option

TOYS: Registry = Registry("toy")


@TOYS.register("a")
@dataclass(frozen=True)
class ToyConfig(Config):
    """A toy entry."""

    n: int = option(3, "a count", low=1)
    rate: float = option(0.5, "a rate", low=0.0, low_open=True, high=1.0)
    mode: Literal["x", "y"] = option("x", "a mode")
    names: tuple[str, ...] = option(("p", "q"), "names")
    limit: int | None = option(None, "optional limit", low=0)
    flag: bool = option(False, "a switch")

    def check(self) -> None:
        if self.limit is not None and self.limit > 100 * self.n:
            raise ConfigError(f"limit {self.limit} > 100 * n")


def test_defaults_and_round_trip():
    cfg = TOYS.make("a")
    assert (cfg.n, cfg.rate, cfg.mode, cfg.names, cfg.limit, cfg.flag) == (3, 0.5, "x", ("p", "q"), None, False)
    d = cfg.to_dict()
    assert d == {"name": "a", "n": 3, "rate": 0.5, "mode": "x", "names": ["p", "q"], "limit": None, "flag": False}
    assert TOYS.from_dict(d) == cfg


def test_coercion_from_text_like_flags():
    cfg = TOYS.make("a", {"n": "7", "rate": "0.25", "names": "u, v,w", "limit": "4", "flag": "true"})
    assert (cfg.n, cfg.rate, cfg.names, cfg.limit, cfg.flag) == (7, 0.25, ("u", "v", "w"), 4, True)


@pytest.mark.parametrize("values, words", [
    ({"n": 0}, ["n = 0", ">= 1"]),
    ({"n": "two"}, ["'two'", "integer"]),
    ({"n": True}, ["True", "integer"]),
    ({"rate": 0.0}, ["rate = 0.0", "> 0.0"]),
    ({"rate": 1.5}, ["rate = 1.5", "<= 1.0"]),
    ({"mode": "z"}, ["'z'", "['x', 'y']"]),
    ({"names": 5}, ["names = 5", "list"]),
    ({"limit": -1}, ["limit = -1"]),
    ({"limit": 1000}, ["limit 1000"]),
    ({"flag": "maybe"}, ["'maybe'", "boolean"]),
    ({"bogus": 1}, ["unknown option 'bogus'", "'n'"]),
])
def test_bad_values_name_the_value(values, words):
    with pytest.raises(ConfigError) as err:
        TOYS.make("a", values)
    for w in words:
        assert w in str(err.value)


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="n = -2"):
        ToyConfig(n=-2)


def test_unknown_entry_lists_names():
    with pytest.raises(ConfigError, match=r"unknown toy 'b'; expected one of \['a'\]"):
        TOYS.get("b")


def test_field_specs_and_describe():
    specs = {s.name: s for s in field_specs(ToyConfig)}
    assert specs["mode"].choices == ("x", "y")
    assert specs["limit"].optional and specs["limit"].kind is int
    assert specs["names"].kind is tuple and specs["names"].item is str
    assert TOYS.describe() == {"a": "A toy entry."}


def test_register_refuses_non_frozen():
    reg: Registry = Registry("other")

    with pytest.raises(TypeError, match="frozen"):
        @reg.register("x")
        @dataclass
        class Loose(Config):
            n: int = option(1, "n")
