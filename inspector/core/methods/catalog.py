"""The method catalog: what each method is, readable without importing torch.

Every method has a torch-free module here (``<name>_options.py``) that holds its options dataclass
and registers a :class:`MethodInfo`: name, label, description, whether it needs labelled anomalous
images, its options (defaults, ranges, choices and help, written once as dataclass field metadata
through :func:`option`), which of them the training wizard shows, and where its implementation
lives.  The wizard, the CLI's parser, ``evaluate``, ``benchmark`` and ``ablation`` read this
catalog; nothing outside ``inspector/core/methods`` branches on a method's name.  Adding a method
means adding ``<name>.py`` (the :class:`~.base.Method`) and ``<name>_options.py`` (registered
here) to this folder, and its module to :data:`BUILTIN`.

``KEY=VALUE`` options from the command line are parsed once, by :func:`parse_options`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import InspectorError

# The built-in methods' catalog modules, in the order the wizard and the CLI list them.
BUILTIN = ("patchcore_options", "npad_options", "apc_options")
DEFAULT_METHOD = "patchcore"

# Settings shared by methods rather than owned by one; a method says which apply to it.
BACKBONE, IMAGE_SIZE, THRESHOLD, LABELLED_ANOMALIES = "backbone", "image_size", "threshold", "labelled_anomalies"
COMMON_SETTINGS = (BACKBONE, IMAGE_SIZE, THRESHOLD)


class Choices:
    """The allowed values of an option, read from the module that owns them only when asked (that
    module may import torch): ``Choices("inspector.core.search", "INDEXES")``."""

    def __init__(self, module: str, attribute: str):
        self.module, self.attribute = module, attribute

    def values(self) -> Tuple:
        return tuple(getattr(importlib.import_module(self.module), self.attribute))

    def __repr__(self) -> str:
        return f"Choices({self.module}.{self.attribute})"


def option(default: Any, help: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
           above: Optional[float] = None, below: Optional[float] = None, choices=None, label: str = "",
           step: Optional[float] = None) -> Any:
    """A dataclass field with what the catalog needs to know about it.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones; ``choices`` a
    tuple or :class:`Choices`; ``label`` and ``step`` are for the wizard's input field."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum,
                                            "above": above, "below": below, "choices": choices,
                                            "label": label, "step": step})


def nested(factory: Callable, help: str = "") -> Any:
    """A field holding another method's options, flattened into this one's (APC holds PatchCore's)."""
    return field(default=None, metadata={"nested": factory, "help": help})


@dataclass(frozen=True)
class OptionSpec:
    """One option as the catalog describes it."""
    name: str
    default: Any
    kind: type                 # int, float, bool, str or tuple (of ints)
    optional: bool             # None is allowed
    help: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    above: Optional[float] = None
    below: Optional[float] = None
    choices: Any = None
    label: str = ""
    step: Optional[float] = None

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def allowed(self) -> Optional[Tuple]:
        if self.choices is None:
            return None
        return self.choices.values() if isinstance(self.choices, Choices) else tuple(self.choices)

    def describe_range(self) -> str:
        """E.g. "(0, 1]", ">= 1", "one of: exact, ivf"; "" when anything of its type goes."""
        lo = f"({self.above:g}" if self.above is not None else (f"[{self.minimum:g}" if self.minimum is not None else "")
        hi = f"{self.below:g})" if self.below is not None else (f"{self.maximum:g}]" if self.maximum is not None else "")
        if lo and hi:
            return f"{lo}, {hi}"
        if lo:
            return (">= " if lo[0] == "[" else "> ") + lo[1:]
        if hi:
            return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        return ""

    def coerce(self, value: Any, owner: str) -> Any:
        """``value`` (as given in Python, or text from the command line) as this option's type,
        checked against its range and choices; an :class:`InspectorError` naming it otherwise."""
        def bad(expected: str) -> InspectorError:
            shown = value if isinstance(value, str) else repr(value)
            return InspectorError(f"{owner} option {self.name} must be {expected} (got {shown})")

        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if self.optional:
                return None
            raise bad(_TYPE_WORDS[self.kind])
        v = value.strip() if isinstance(value, str) else value
        if self.kind is bool:
            if isinstance(v, str) and v.lower() in _BOOL_WORDS:
                v = _BOOL_WORDS[v.lower()]
            if not isinstance(v, bool):
                raise bad("true or false")
        elif self.kind is int:
            if isinstance(v, str):
                try:
                    v = int(v)
                except ValueError:
                    raise bad("a whole number") from None
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad("a whole number")
        elif self.kind is float:
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    raise bad("a number") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad("a number")
            v = float(v)
        elif self.kind is tuple:
            if isinstance(v, str):
                try:
                    v = json.loads(v if v.startswith("[") else f"[{v}]")
                except ValueError:
                    raise bad("a list of whole numbers, e.g. 8,16") from None
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise bad("a list of whole numbers, e.g. 8,16")
            v = tuple(v)
        elif not isinstance(v, str):
            raise bad("text")
        if self.kind in (int, float):
            rng = self.describe_range()
            if ((self.minimum is not None and v < self.minimum) or (self.maximum is not None and v > self.maximum)
                    or (self.above is not None and v <= self.above) or (self.below is not None and v >= self.below)):
                raise bad(f"in {rng}" if "," in rng else rng)
        allowed = self.allowed()
        if allowed is not None and v not in allowed:
            raise bad("one of " + ", ".join(str(a) for a in allowed))
        return v


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False, "on": True, "off": False}
_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", tuple: "a list of whole numbers",
               str: "text"}


def _kind(hint) -> Tuple[type, bool]:
    """(base type, whether None is allowed) of a resolved type hint."""
    optional = False
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return tuple, optional
    if hint in (bool, int, float, str):
        return hint, optional
    raise TypeError(f"option type {hint!r} is not supported by the catalog")


def option_specs(cls: type) -> List[OptionSpec]:
    """The options of an options dataclass, nested ones flattened after its own (an own option of
    the same name wins)."""
    hints = typing.get_type_hints(cls)
    own: List[OptionSpec] = []
    inner: List[OptionSpec] = []
    for f in dataclasses.fields(cls):
        md = f.metadata
        if "nested" in md:
            inner += option_specs(hints[f.name])
            continue
        kind, optional = _kind(hints[f.name])
        own.append(OptionSpec(f.name, f.default, kind, optional, md.get("help", ""), md.get("minimum"),
                              md.get("maximum"), md.get("above"), md.get("below"), md.get("choices"),
                              md.get("label", ""), md.get("step")))
    names = {s.name for s in own}
    return own + [s for s in inner if s.name not in names]


def unknown_options_error(owner: str, unknown: Sequence[str], known: Sequence[str], method: str = "") -> InspectorError:
    """One line naming the unknown options, the likely meant one and every valid one."""
    hint = ""
    close = difflib.get_close_matches(unknown[0], known, n=1)
    if close:
        hint = f"; did you mean {close[0]}?"
    more = f"; see 'inspector methods {method}'" if method else ""
    return InspectorError(f"unknown {owner} option(s): {', '.join(unknown)}{hint} "
                          f"(its options: {', '.join(sorted(known))}{more})")


def build_options(cls: type, values: Mapping[str, Any], owner: str, method: str = ""):
    """An instance of the options dataclass ``cls`` from ``values`` (a partial dict: the rest keep
    their defaults): unknown names, wrong types, values out of range or outside the choices raise an
    :class:`InspectorError` naming the option.  Nested options (``nested``) are built from the keys
    that belong to them.  The instance's ``check()``, if any, then checks what involves several
    options."""
    values = dict(values)
    hints = typing.get_type_hints(cls)
    own = {s.name: s for s in option_specs_own(cls)}
    nested_fields = [f for f in dataclasses.fields(cls) if "nested" in f.metadata]
    inner_names = {s.name for f in nested_fields for s in option_specs(hints[f.name])}
    unknown = sorted(set(values) - set(own) - inner_names)
    if unknown:
        raise unknown_options_error(owner, unknown, sorted(set(own) | inner_names), method)
    kwargs = {k: own[k].coerce(v, owner) for k, v in values.items() if k in own}
    for f in nested_fields:
        sub = hints[f.name]
        sub_names = {s.name for s in option_specs(sub)}
        sub_values = {k: v for k, v in values.items() if k in sub_names and k not in own}
        builder = getattr(sub, "from_dict", None)
        kwargs[f.name] = builder(sub_values) if builder else build_options(sub, sub_values, owner, method)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check()
    return obj


def option_specs_own(cls: type) -> List[OptionSpec]:
    """The options a dataclass declares itself (not the nested ones)."""
    nested_names = {f.name for f in dataclasses.fields(cls) if "nested" in f.metadata}
    specs = option_specs(cls)
    own_names = [f.name for f in dataclasses.fields(cls) if f.name not in nested_names]
    return [s for s in specs if s.name in own_names]


def options_dict(obj) -> Dict[str, Any]:
    """An options instance as one flat JSON-able dict (nested options flattened, tuples as lists)."""
    out: Dict[str, Any] = {}
    inner: Dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if "nested" in f.metadata:
            inner.update(options_dict(v))
        else:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    out.update({k: v for k, v in inner.items() if k not in out})
    return out


def _default_costs():
    from .costs import MemoryBankCosts
    return MemoryBankCosts()


@dataclass(frozen=True)
class MethodInfo:
    """What the wizard, the CLI and the research tools know about a method, without torch."""
    name: str                              # the key in settings, model files and ``--method``
    label: str                             # e.g. "N-pad"
    description: str                       # one line for the wizard's list and ``--help``
    options: type                          # the options dataclass (with :func:`option` fields)
    implementation: str                    # the module whose import registers the Method (torch)
    needs_anomalies: bool = False          # learns from labelled anomalous images too
    main_options: Tuple[str, ...] = ()     # what the training wizard lets the operator set
    settings: Tuple[str, ...] = COMMON_SETTINGS   # shared settings that apply (see COMMON_SETTINGS)
    aliases: Mapping[str, str] = field(default_factory=dict)   # short names accepted for options
    # what its stages cost, for the progress meter's plan (see .costs): a memory bank by default
    costs: Any = field(default_factory=lambda: _default_costs())

    def option_specs(self) -> List[OptionSpec]:
        return option_specs(self.options)

    def option(self, name: str) -> OptionSpec:
        for s in self.option_specs():
            if s.name == name:
                return s
        raise KeyError(name)

    def has_option(self, name: str) -> bool:
        return any(s.name == name for s in self.option_specs())

    @property
    def shared_settings(self) -> Tuple[str, ...]:
        """The shared settings that apply: the declared ones, plus labelled anomalies if needed."""
        return tuple(self.settings) + ((LABELLED_ANOMALIES,) if self.needs_anomalies else ())

    def main_specs(self) -> List[OptionSpec]:
        return [self.option(n) for n in self.main_options]

    def defaults(self) -> Dict[str, Any]:
        return {s.name: s.default for s in self.option_specs()}

    def check_values(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Each given option coerced to its type and checked against its range and choices (no
        checks that involve other options, which need the implementation: see :func:`parse_options`)."""
        specs = {s.name: s for s in self.option_specs()}
        known = sorted(set(specs) | set(self.aliases))
        unknown = sorted(k for k in values if k not in specs and k not in self.aliases)
        if unknown:
            raise unknown_options_error(self.label, unknown, known, self.name)
        out = {}
        for k, v in values.items():
            if k in specs:
                out[k] = specs[k].coerce(v, self.label)
            else:       # an alias: its target's type (its range may read differently, e.g. a radius)
                target = specs[self.aliases[k]]
                out[k] = dataclasses.replace(target, name=k, minimum=None, maximum=None, above=None,
                                             below=None).coerce(v, self.label)
        return out


_CATALOG: Dict[str, MethodInfo] = {}
_loaded = False


def register(info: MethodInfo) -> MethodInfo:
    """Add (or replace) a method in the catalog.  Its main options must exist and must not take
    their choices from another module (the wizard shows them without importing torch)."""
    for n in info.main_options:
        if isinstance(info.option(n).choices, Choices):
            raise ValueError(f"{info.name}: main option {n} cannot read its choices from {info.option(n).choices}")
    _CATALOG[info.name] = info
    return info


def unregister(name: str) -> None:
    _CATALOG.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        if importlib.util.find_spec(f"{__package__}.{module}") is not None:
            importlib.import_module(f"{__package__}.{module}")


def _rank(info: MethodInfo) -> int:
    """Built-in methods in :data:`BUILTIN`'s order, whichever was imported first; then the others."""
    module = info.options.__module__.rsplit(".", 1)[-1]
    return BUILTIN.index(module) if info.options.__module__.startswith(__package__) and module in BUILTIN \
        else len(BUILTIN)


def methods() -> List[MethodInfo]:
    """Every method in the catalog: the built-in ones in :data:`BUILTIN`'s order, then the others
    in the order they registered."""
    _load_builtin()
    return sorted(_CATALOG.values(), key=_rank)        # stable: registration order within a rank


def names() -> List[str]:
    return [m.name for m in methods()]


def get(name: str) -> MethodInfo:
    _load_builtin()
    try:
        return _CATALOG[name]
    except KeyError:
        raise InspectorError(f"unknown method '{name}' (choose one of: {', '.join(_CATALOG)})") from None


def split_items(items: Sequence[str]) -> Dict[str, str]:
    """``["KEY=VALUE", ...]`` → ``{KEY: VALUE}`` (text; the last of a repeated key wins)."""
    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InspectorError(f"--option needs KEY=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def parse_options(method: str, items: Sequence[str] = (), given: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The one parser of method options from the command line (train, evaluate, benchmark,
    ablation): ``items`` as ``KEY=VALUE`` text, ``given`` already typed (from the shared flags, e.g.
    ``--coreset``), the items winning.  Each value is converted to its option's type and checked;
    then the whole set is checked by the method's own options class (rules that involve several
    options).  Returns the typed values, or raises an :class:`InspectorError` (one line)."""
    info = get(method)
    values = dict(given or {})
    values.update(split_items(items))
    typed = info.check_values(values)
    builder = getattr(info.options, "from_dict", None)
    if builder is not None:
        builder(typed)
    else:
        build_options(info.options, typed, info.label, info.name)
    return typed


def describe(info: MethodInfo) -> str:
    """A method and its options as text (``inspector methods NAME``)."""
    lines = [f"{info.name}: {info.label}, {info.description}",
             "needs labelled anomalous images" if info.needs_anomalies else "learns from good images only",
             f"shared settings: {', '.join(info.shared_settings)}", "", "options (--option KEY=VALUE):"]
    for s in info.option_specs():
        rng = s.describe_range()
        try:
            allowed = s.allowed()
        except ImportError:
            allowed = None
        extra = [f"default {s.default if not isinstance(s.default, tuple) else ','.join(map(str, s.default))}"]
        if rng:
            extra.append(rng)
        if allowed:
            extra.append("one of " + ", ".join(map(str, allowed)))
        star = " *" if s.name in info.main_options else ""
        lines.append(f"  {s.name}{star} ({'; '.join(extra)})")
        if s.help:
            lines.append(f"      {s.help}")
    if info.aliases:
        lines.append("aliases: " + ", ".join(f"{a} = {n}" for a, n in info.aliases.items()))
    if info.main_options:
        lines.append("* shown in the application's training wizard")
    return "\n".join(lines)
