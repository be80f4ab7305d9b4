"""Checks of a ``search:`` section that need the whole spec, and the fingerprint of a search.

:func:`search_problems` is the one check of the objective and the searched paths: ``cnnspec
validate`` and ``cnnspec search`` both call it, so a section that validates is one that
``search`` accepts. No TensorFlow, no Optuna.

:func:`fingerprint` is a hash of what a search searches: the resolved spec (after ``--set`` and
``--scale``) without its ``search:`` section, plus the searched space, the objective and its
direction. A study records it; a rerun under the same name whose spec changed is refused, as
its trials' values would otherwise be applied to another model (``best.yaml`` would describe a
model that was never trained).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import yamlio
from ..errors import Problem, SpecError
from ..spec import ModelSpec, load_spec
from ..spec.monitors import logged, unknown_name
from ..spec.search import IntSpec, LogUniformSpec, SearchSpec, UniformSpec, override_text


def sample(dim: Any) -> Any:
    """A value of ``dim`` to check its path with."""
    if isinstance(dim, LogUniformSpec):
        return dim.loguniform[0]
    if isinstance(dim, UniformSpec):
        return dim.uniform[0]
    if isinstance(dim, IntSpec):
        return dim.int_[0]
    return dim[0]


def search_problems(
    spec_path: str | Path,
    spec: ModelSpec,
    overrides: list[str] | tuple[str, ...] = (),
    scale: str | None = None,
    search: SearchSpec | None = None,
) -> list[Problem]:
    """Every problem of ``spec``'s search section (``search``: that section, edited) that the
    schema cannot see: an objective the recipe does not log, a path ``--set`` refuses."""
    s = search or spec.search
    if s is None:
        return []
    doc = yamlio.load(spec_path)
    problems = []
    known = logged(spec, spec.graph)
    if s.objective not in known:
        where = doc.location(("search", "objective"))
        problems.append(unknown_name(s.objective, "objective", known, where, "search"))
    for path, dim in s.space.items():
        text = override_text(path, sample(dim))
        try:
            load_spec(spec_path, [*overrides, text], scale)
        except SpecError as exc:
            mine = [p for p in exc.problems if p.location.file.startswith("--set")]
            if mine:
                problems.append(
                    Problem(
                        doc.location(("search", "space", path)),
                        f"'{path}' is not a value of this spec: {mine[0].message}",
                        mine[0].hint or "use a path that --set accepts, e.g. train.batch_size",
                        "search.space",
                    )
                )
    return problems


def fingerprint(spec: ModelSpec, search: SearchSpec, scale: str | None = None) -> str:
    """A hash of what the search searches (not of its trial count, budget, pruner or sampler:
    those may change between runs without making the trials so far wrong)."""
    data = {k: v for k, v in spec.source_data.items() if k != "search"}
    what = {
        "spec": data,
        "scale": scale,
        "space": {p: _dim(d) for p, d in sorted(search.space.items())},
        "objective": search.objective,
        "maximize": search.maximize,
    }
    text = json.dumps(what, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _dim(dim: Any) -> Any:
    return dim.model_dump(mode="json", by_alias=True) if hasattr(dim, "model_dump") else dim
