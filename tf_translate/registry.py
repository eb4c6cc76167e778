"""The method registry: one entry per ``--method`` name, with its capabilities.

Tests parametrize over the methods that have a capability (``exportable``,
``distributable``), so a new method is picked up without editing them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from tf_translate.errors import UsageError


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    model: Any  # the TranslationModel subclass (for a method that does not train: the function that runs it)
    config: type  # the method's config dataclass
    data_kind: str  # which tf_translate.data builder feeds it: the module tf_translate.data.<data_kind>
    evaluation: str = "unpaired"  # how tf_translate.metrics.evaluate scores it (its evaluations)
    command: str | None = None  # the subcommand that runs it, for a method that does not train (Gatys)
    exportable: bool = True  # has generator(s) to export
    distributable: bool = True  # trains under tf.distribute
    # --precision auto picks mixed_bfloat16 on CPUs with BF16: set where bfloat16 measured clearly
    # faster than float32 with quality within float32's seed spread (docs/scaling.md)
    bfloat16: bool = False
    overrides: dict = dataclasses.field(default_factory=dict)  # {section: {field: value}} over the defaults
    demo: dict = dataclasses.field(default_factory=dict)  # overrides for the embedded default data
    demo_result: str = ""  # what the run without --data gave and in how long, measured (train --help says it)
    resumable: tuple[str, ...] = ()  # model settings a resumed run may change (they change no weight)
    # Adam as the method's reference code runs it: "pytorch" (training.adam: CycleGAN, pix2pix,
    # StarGAN, proven step for step in tests/test_lockstep.py) or "keras" (Johnson's Lua Torch
    # adds epsilon before the bias correction as Keras does; DTN has no released code)
    adam: str = "keras"


METHODS: dict[str, MethodSpec] = {}


def register(name: str, **kwargs: Any) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = MethodSpec(name=name, model=cls, **kwargs)
        cls.method_name = name
        return cls

    return wrap


def _load_all() -> None:
    import tf_translate.methods  # noqa: F401  (importing registers every method)


def names(**capabilities: bool) -> list[str]:
    """Registered method names, optionally only those with the given capabilities."""
    _load_all()
    return sorted(n for n, s in METHODS.items() if all(getattr(s, k) == v for k, v in capabilities.items()))


def get(name: str) -> MethodSpec:
    _load_all()
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}") from None
