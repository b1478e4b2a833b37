"""Probes every exercise can use: calls that need something done inside the worker."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import probe


@probe
def raises(impl: ModuleType, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str | None:
    """Call ``name`` and return the exception type it raised, or None.

    ``NotImplementedError`` is re-raised so an unfinished stub reads as "not implemented".
    """
    try:
        getattr(impl, name)(*args, **(kwargs or {}))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the type is the observation
        return type(exc).__name__
    return None


@probe
def call_transposed(impl: ModuleType, name: str, args: list[Any], transpose: dict[str, list[int]],
                    kwargs: dict[str, Any] | None = None) -> Any:
    """Call ``name`` with some tensor arguments made non-contiguous by ``transpose(d0, d1)``.

    The grader sends each such argument already transposed; transposing again here gives a view
    with the intended values and a non-contiguous layout.
    """
    args = list(args)
    for position, (d0, d1) in transpose.items():
        args[int(position)] = args[int(position)].transpose(d0, d1)
    return getattr(impl, name)(*args, **(kwargs or {}))
