"""One small registry per kind of component, each entry a frozen dataclass config.

A kind (search space, supernet, arch sampler, step strategy, ranking loss, search method,
benchmark loader) is a :class:`Registry`. An entry is a frozen dataclass deriving from
:class:`Config`, registered under a name::

    SAMPLERS = Registry("sampler")

    @SAMPLERS.register("fair")
    @dataclass(frozen=True)
    class FairSamplerConfig(Config):
        \"\"\"Strict fairness (FairNAS).\"\"\"
        arch_batch: int | None = option(None, "paths per step (default: most choices)", low=1)

        def build(self, supernet):
            return StrictFairSampler(supernet, arch_batch=self.arch_batch)

Fields are declared with :func:`option`: a default, a help text and bounds, so the values are
checked when the config is made (``__post_init__``), whatever made it (Python, the CLI flags
generated from the fields, a TOML table, a checkpoint). ``dataclasses.asdict(cfg)`` plus
``cfg.name`` is what checkpoints and run records store; :meth:`Registry.from_dict` reads it back.

This module imports nothing heavy (no torch), so the CLI can list every entry quickly; an
entry's ``build`` imports what it needs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from nasrank.errors import ConfigError

__all__ = ["Config", "Registry", "option", "field_specs", "FieldSpec", "import_package_modules"]

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, low: float | None = None,
           high: float | None = None, choices: tuple[Any, ...] | None = None,
           low_open: bool = False) -> Any:
    """A config field with its help text and the values it accepts.

    ``low``/``high`` bound numbers (inclusive; ``low_open=True`` excludes ``low``);
    ``choices`` lists the allowed values. A list default is stored as a tuple (frozen).
    """
    meta = {"help": help, "low": low, "high": high, "choices": choices, "low_open": low_open}
    if isinstance(default, list):
        default = tuple(default)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What the CLI and TOML readers need to know about one config field."""

    name: str
    kind: type  # int, float, str, bool or tuple (a list of str / int / float)
    item: type | None  # element type of a tuple field
    optional: bool  # None is allowed
    default: Any
    required: bool
    help: str
    choices: tuple[Any, ...] | None


def _resolve(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # each class's annotations in its own module's namespace


def _unwrap_type(tp: Any) -> tuple[type, type | None, bool]:
    """(kind, item type, optional) of an annotation such as ``int | None`` or ``tuple[str, ...]``."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"config fields may be one type or None, got {tp!r}")
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin is typing.Literal:
        values = typing.get_args(tp)
        return type(values[0]), None, optional
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple, (args[0] if args else str), optional
    if tp in (int, float, str, bool):
        return tp, None, optional
    raise TypeError(f"unsupported config field type {tp!r} (use int, float, str, bool, "
                    f"tuple[...] or X | None)")


def field_specs(cls: type) -> list[FieldSpec]:
    """The fields of a config class, with their types resolved."""
    hints = _resolve(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, item, optional = _unwrap_type(hints[f.name])
        tp = hints[f.name]
        choices = f.metadata.get("choices")
        if choices is None:
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            lit = inner[0] if inner and typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
            if typing.get_origin(lit) is typing.Literal:
                choices = typing.get_args(lit)
        required = f.default is _MISSING and f.default_factory is _MISSING  # type: ignore[misc]
        default = None if required else (
            f.default if f.default is not _MISSING else f.default_factory())  # type: ignore[misc]
        out.append(FieldSpec(f.name, kind, item, optional, default, required,
                             f.metadata.get("help", ""), choices))
    return out


def _coerce(spec: FieldSpec, value: Any, where: str) -> Any:
    """``value`` (from TOML, a flag's text, or JSON) as the field's type; errors name it."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {spec.name} = {value!r} is not {expected}")

    if value is None:
        if spec.optional:
            return None
        raise bad(f"allowed (expected {spec.kind.__name__})")
    if spec.kind is tuple:
        items = value
        if isinstance(value, str):
            items = [t.strip() for t in value.split(",") if t.strip()]
        if not isinstance(items, (list, tuple)):
            raise bad("a list")
        item_spec = dataclasses.replace(spec, kind=spec.item or str, item=None, optional=False,
                                        choices=None)
        return tuple(_coerce(item_spec, v, where) for v in items)
    if spec.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise bad("a boolean (true/false)")
    if spec.kind is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad("an integer")
    if spec.kind is float:
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if spec.kind is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    raise bad(spec.kind.__name__)  # pragma: no cover - field_specs refuses other kinds


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every registered config: frozen, checked on creation, JSON-able.

    Subclasses add fields with :func:`option`, may override :meth:`check` for rules that
    involve several fields, and implement ``build(...)``.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        where = f"{self.kind or 'config'} {self.name!r}" if self.name else type(self).__name__
        for spec, f in zip(field_specs(type(self)), dataclasses.fields(self)):
            value = getattr(self, spec.name)
            coerced = _coerce(spec, value, where)
            if coerced != value or type(coerced) is not type(value):
                object.__setattr__(self, spec.name, coerced)
            self._check_bounds(spec, f, coerced, where)
        self.check()

    @staticmethod
    def _check_bounds(spec: FieldSpec, f: dataclasses.Field, value: Any, where: str) -> None:
        if value is None:
            return
        values = value if isinstance(value, tuple) else (value,)
        low, high = f.metadata.get("low"), f.metadata.get("high")
        low_open = f.metadata.get("low_open", False)
        for v in values:
            if spec.choices is not None and v not in spec.choices:
                raise ConfigError(f"{where}: {spec.name} = {v!r} is not one of "
                                  f"{list(spec.choices)}")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if v != v:  # NaN
                    raise ConfigError(f"{where}: {spec.name} = {v!r} is not a number")
                if low is not None and (v <= low if low_open else v < low):
                    rel = ">" if low_open else ">="
                    raise ConfigError(f"{where}: {spec.name} = {v!r}, expected {rel} {low}")
                if high is not None and v > high:
                    raise ConfigError(f"{where}: {spec.name} = {v!r}, expected <= {high}")

    def check(self) -> None:
        """Rules across several fields (raise :class:`~nasrank.errors.ConfigError`)."""

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., **fields}``: what checkpoints and records store."""
        d = dataclasses.asdict(self)
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in d.items()}}


C = TypeVar("C", bound=Config)


class Registry(Generic[C]):
    """Named configs of one kind of component (``"sampler"``, ``"search method"``...)."""

    def __init__(self, kind: str, *, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, type[C]] = {}
        self._loader = loader  # imports the modules that register the built-in entries
        self._loaded = loader is None

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader()

    def register(self, name: str) -> Callable[[type[C]], type[C]]:
        """Class decorator: register a frozen dataclass config under ``name``."""
        def deco(cls: type[C]) -> type[C]:
            if not (isinstance(cls, type) and issubclass(cls, Config)
                    and dataclasses.is_dataclass(cls)):
                raise TypeError(f"{cls!r} must be a dataclass deriving from Config")
            if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
                raise TypeError(f"{cls.__name__} must be a frozen dataclass")
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            field_specs(cls)  # fail at import on a field type the CLI cannot read
            cls.name = name
            cls.kind = self.kind
            self._entries[name] = cls
            return cls
        return deco

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> type[C]:
        """The config class called ``name``; the error lists the registered names."""
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; expected one of "
                              f"{self.names()}") from None

    def make(self, name: str, values: Mapping[str, Any] | None = None, *,
             where: str | None = None) -> C:
        """A checked config of entry ``name`` from loose values (TOML, flags, JSON)."""
        cls = self.get(name)
        values = dict(values or {})
        where = where or f"{self.kind} {name!r}"
        specs = {s.name: s for s in field_specs(cls)}
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise ConfigError(f"{where}: unknown option {unknown[0]!r}; its options are "
                              f"{sorted(specs) or 'none'}")
        missing = [n for n, s in specs.items() if s.required and n not in values]
        if missing:
            raise ConfigError(f"{where}: option {missing[0]!r} is required")
        kwargs = {k: _coerce(specs[k], v, where) for k, v in values.items()}
        return cls(**kwargs)

    def from_dict(self, data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`Config.to_dict`."""
        data = dict(data)
        name = data.pop("name", None)
        if name is None:
            raise ConfigError(f"a stored {self.kind} config has no 'name': {data!r}")
        return self.make(name, data)

    def describe(self) -> dict[str, str]:
        """``name -> first line of the config's docstring``."""
        return {n: ((c.__doc__ or "").strip().splitlines() or [""])[0]
                for n, c in ((n, self.get(n)) for n in self.names())}


def import_package_modules(package: str) -> Callable[[], None]:
    """A registry loader that imports every module of ``package``, so that an entry is
    registered by its own file alone (no list of modules to edit)."""

    def load() -> None:
        import importlib
        import pkgutil

        pkg = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")

    return load
