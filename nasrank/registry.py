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

__all__ = ["Config", "Registry", "option", "component", "field_specs", "FieldSpec", "check_value",
           "expected", "import_package_modules"]

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, low: float | None = None,
           high: float | None = None, choices: tuple[Any, ...] | None = None,
           low_open: bool = False, flag: str | None = None) -> Any:
    """A config field with its help text and the values it accepts.

    ``low``/``high`` bound numbers (inclusive; ``low_open=True`` excludes ``low``);
    ``choices`` lists the allowed values. A list default is stored as a tuple (frozen).
    ``flag``: the CLI/TOML spelling when it differs from the field name (``--name`` for a
    field that cannot be called ``name``).
    """
    meta = {"help": help, "low": low, "high": high, "choices": choices, "low_open": low_open,
            "flag": flag}
    if isinstance(default, list):
        default = tuple(default)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def component(registry: "Registry | str", default: str | Mapping[str, Any], help: str = "", *,
              auto: Callable[[Any], str | None] | None = None, none: str | None = None) -> Any:
    """A field whose value is a config of another registry (the sampler of a training command,
    the search method of a search...), chosen by name and tuned by that entry's own fields.

    ``registry``: the :class:`Registry`, or ``"module:NAME"`` to import it only when used (a
    command module names ``"nasrank.spaces.registry:SPACES"`` so that ``nasrank --help`` does not
    import the packages, and torch, behind it).
    Annotate it with ``Config`` (``Config | None`` when ``none`` is given). It accepts a config,
    an entry name, or a mapping ``{"name": ..., **options}`` (without ``"name"`` the options tune
    the default entry), and always holds a checked config (or ``None``). ``default`` is an entry
    name or such a mapping (a run's own defaults for the entry's options).

    ``auto``: a function of the owning config (its earlier fields are already checked) that
    names the entry to use for the value ``"auto"`` (e.g. the supernet serving the chosen
    space); it may return ``None`` when ``none`` is allowed. ``none``: what ``"none"`` means
    (the field then holds ``None``). The CLI gives the field a ``--field NAME`` flag whose choices
    come from the registry and ``--field.option VALUE`` flags for the entries' fields; TOML gives
    it a table ``[command.field]``.
    """
    meta = {"help": help, "low": None, "high": None, "choices": None, "low_open": False,
            "registry": registry, "auto": auto, "none": none}
    if isinstance(default, Mapping):
        frozen = dict(default)
        return dataclasses.field(default_factory=lambda: dict(frozen), metadata=meta)
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
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    registry_ref: "Registry | str | None" = None  # a :func:`component` field (kind is Config)
    auto: Callable[[Any], str | None] | None = None  # component: resolves "auto"
    none: str | None = None  # component: what "none" means, when allowed
    flag: str = ""  # CLI / TOML spelling (``--flag-name``, ``flag_name = ...``)

    @property
    def registry(self) -> "Registry | None":
        """A component's registry (imported on first use when given as ``"module:NAME"``)."""
        ref = self.registry_ref
        if isinstance(ref, str):
            import importlib

            module, _, attr = ref.partition(":")
            ref = getattr(importlib.import_module(module), attr)
        return ref

    @property
    def default_name(self) -> str | None:
        """A component's default entry name (``"auto"``/``"none"`` included)."""
        d = self.default
        return d.get("name") if isinstance(d, Mapping) else d


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
    if isinstance(tp, type) and issubclass(tp, Config):
        return Config, None, optional
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
        registry = f.metadata.get("registry")
        if (kind is Config) != (registry is not None):
            raise TypeError(f"{cls.__name__}.{f.name}: a config-typed field is declared with "
                            f"component(registry, ...) and only such a field")
        out.append(FieldSpec(f.name, kind, item, optional, default, required,
                             f.metadata.get("help", ""), choices, f.metadata.get("low"),
                             f.metadata.get("high"), f.metadata.get("low_open", False),
                             registry, f.metadata.get("auto"), f.metadata.get("none"),
                             f.metadata.get("flag") or f.name))
    return out


def expected(spec: FieldSpec) -> str:
    """What a field accepts, in words ("an integer >= 1", "one of ['a', 'b']")."""
    if spec.kind is Config:
        names = spec.registry.names() if spec.registry is not None else []
        extra = (["auto"] if spec.auto else []) + (["none"] if spec.none else [])
        return f"one of {names + extra}"
    if spec.choices is not None:
        text = f"one of {list(spec.choices)}"
    else:
        text = {int: "an integer", float: "a number", str: "a string",
                bool: "true or false"}.get(spec.item if spec.kind is tuple else spec.kind, "a value")
        if spec.low is not None and spec.high is not None:
            text += f" in {'(' if spec.low_open else '['}{spec.low:g}, {spec.high:g}]"
        elif spec.low is not None:
            text += f" {'>' if spec.low_open else '>='} {spec.low:g}"
        elif spec.high is not None:
            text += f" <= {spec.high:g}"
    if spec.kind is tuple:
        text = f"a comma-separated list, each {text}"
    return text + (" (or none)" if spec.optional and spec.kind is not Config else "")


def check_value(spec: FieldSpec, value: Any, where: str) -> Any:
    """``value`` coerced to the field's type and checked against its bounds and choices."""
    coerced = _coerce(spec, value, where)
    _check_bounds(spec, coerced, where)
    return coerced


def _coerce(spec: FieldSpec, value: Any, where: str) -> Any:
    """``value`` (from TOML, a flag's text, or JSON) as the field's type; errors name it."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {spec.name} = {value!r} is not {expected}")

    if value is None:
        if spec.optional:
            return None
        raise bad(f"allowed (expected {spec.kind.__name__})")
    if spec.kind is Config:
        return _component(spec, value, None, where)
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


def _component(spec: FieldSpec, value: Any, owner: Any, where: str) -> Any:
    """The config held by a component field (see :func:`component`)."""
    reg = spec.registry
    assert reg is not None
    if isinstance(value, Config):
        if value.kind != reg.kind or value.name not in reg:
            raise ConfigError(f"{where}: {spec.name} = {value!r} is not a {reg.kind} config")
        return value
    if isinstance(value, str) or value is None:
        name, opts = value, {}
    elif isinstance(value, Mapping):
        opts = dict(value)
        name = opts.pop("name", None)
        if name is None:  # options alone tune the default entry
            default = spec.default if isinstance(spec.default, Mapping) else {"name": spec.default}
            name = default.get("name")
            opts = {**{k: v for k, v in default.items() if k != "name"}, **opts}
    else:
        raise ConfigError(f"{where}: {spec.name} = {value!r} is not a {reg.kind} name or table")
    if name == "auto" and spec.auto is not None:
        if owner is None:
            raise ConfigError(f"{where}: {spec.name} = 'auto' needs the whole config")
        name = spec.auto(owner)
        if name is None and opts:
            raise ConfigError(f"{where}: no {reg.kind} is used here, so its options "
                              f"{sorted(opts)} do not apply")
    if name is None or (name == "none" and spec.none is not None):
        if name is None and spec.none is None:
            raise ConfigError(f"{where}: {spec.name} needs a {reg.kind}; expected one of "
                              f"{reg.names()}")
        if opts:
            raise ConfigError(f"{where}: {spec.name} = 'none' takes no options, got {sorted(opts)}")
        return None
    if not isinstance(name, str):
        raise ConfigError(f"{where}: {spec.name} = {name!r} is not a {reg.kind} name")
    return reg.make(name, opts, where=f"{where}: {spec.name} {name!r}")


def _check_bounds(spec: FieldSpec, value: Any, where: str) -> None:
    if value is None or spec.kind is Config:
        return
    values = value if isinstance(value, tuple) else (value,)
    low, high, low_open = spec.low, spec.high, spec.low_open
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
        for spec in field_specs(type(self)):
            value = getattr(self, spec.name)
            coerced = (_component(spec, value, self, where) if spec.kind is Config
                       else check_value(spec, value, where))
            if coerced is not value:
                object.__setattr__(self, spec.name, coerced)
        self.check()
    def check(self) -> None:
        """Rules across several fields (raise :class:`~nasrank.errors.ConfigError`)."""

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., **fields}``: what checkpoints and records store."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = (v.to_dict() if isinstance(v, Config)
                           else list(v) if isinstance(v, tuple) else v)
        return out


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
        kwargs = {k: v if specs[k].kind is Config else _coerce(specs[k], v, where)
                  for k, v in values.items()}  # components are resolved by the config itself
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
    registered by its own file alone (no list of modules to edit). Subpackages are not
    imported (``nasrank.spaces.networks``: the torch modules, loaded when a network is built)."""

    def load() -> None:
        import importlib
        import pkgutil

        pkg = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_") and not info.ispkg:
                importlib.import_module(f"{package}.{info.name}")

    return load
