"""What the expander carries: the document, the problems found, the defines and the params."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import yamlio
from ..errors import Location, Problem, did_you_mean
from .items import COMMON_KEYS, REGISTRY, REPEAT_INDEX
from .scales import Scaling


class Context:
    """Where we are while expanding: the document, problems found, the define stack."""

    def __init__(
        self,
        doc: yamlio.Document,
        defines: dict[str, Any],
        overrides: dict,
        scaling: Scaling | None = None,
        params: Any = None,
    ) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.overrides = overrides
        self.stack: list[str] = []
        self.scaling = scaling
        self.count = 0
        self._seen: set[str] = set()
        #: Defines refused for their name, with their parameters: a use written for the define
        #: is skipped (the one error is the define's), a use of the built-in kind still counts.
        self.refused: dict[str, list] = {}
        self.defines = self._check_defines(defines if isinstance(defines, dict) else {})
        #: Values of ``$name`` in every item: the spec's ``params:``, then the scale's.
        self.params = self._check_params(params, ("params",), "params")
        self.spec_params = dict(self.params)
        if scaling is not None:
            where = ("scales", scaling.name, "params")
            self.params.update(self._check_params(scaling.spec.params, where, "scale"))

    def check_scale_params(self, scales: Any) -> None:
        """Every scale sets values of the spec's params:; another name is a typo, never ignored.

        Checked for every scale, not only the one applied: a typo in ``b7`` shows at once.
        """
        for name, scale in scales.items() if isinstance(scales, dict) else ():
            params = scale.get("params") if isinstance(scale, dict) else None
            for key in params if isinstance(params, dict) else ():
                if isinstance(key, str) and key not in self.spec_params:
                    known = ", ".join(self.spec_params) or "none (add a params: section)"
                    self.add(
                        ("scales", name, "params", key),
                        f"scales.{name}.params",
                        f"unknown parameter '{key}' (a scale sets values of the spec's params:)",
                        did_you_mean(key, list(self.spec_params)) or f"the spec's params: {known}",
                    )

    def _check_params(self, params: Any, path: tuple, human: str) -> dict[str, Any]:
        if not isinstance(params, dict):
            return {}  # a wrong type is reported by the model validation
        out = {}
        for key, value in params.items():
            if not isinstance(key, str) or not key.isidentifier() or key == REPEAT_INDEX:
                self.add(
                    path,
                    human,
                    f"a parameter name must be a name other than '{REPEAT_INDEX}', received {key!r}",
                    "write e.g. 'params: {dropout: 0.2}'",
                )
            else:
                out[key] = value
        return out

    def location(self, path: Sequence) -> Location:
        for opath, text in self.overrides.items():
            if tuple(path[: len(opath)]) == opath:
                return Location(f"--set {text}")
        return self.doc.location(tuple(path))

    def add(self, path: Sequence, human: str, message: str, hint: str = "") -> None:
        problem = Problem(self.location(path), message, hint, human)
        key = f"{problem.location}: {message}"
        if key not in self._seen:  # a define used ten times reports its error once
            self._seen.add(key)
            self.problems.append(problem)

    def _check_defines(self, defines: dict[str, Any]) -> dict[str, Any]:
        """Refuse defines that shadow a built-in kind, and parameters that are not names."""
        usable = {}
        for name, define in defines.items():
            if name in REGISTRY or name in COMMON_KEYS:
                params = define.get("params") if isinstance(define, dict) else None
                self.refused[name] = list(params) if isinstance(params, dict) else []
                what = "built-in kind" if name in REGISTRY else "key every item may carry"
                self.add(
                    ("define", name),
                    f"define.{name}",
                    f"'{name}' is a {what}; a define of that name would hide it",
                    f"rename the block, e.g. '{'my_' + name if name.endswith('block') else name + '_block'}'",
                )
                continue
            params = define.get("params") if isinstance(define, dict) else None
            for key in params if isinstance(params, dict) else ():
                if not isinstance(key, str):
                    continue  # reported by the model validation (a name must be a string)
                if not key.isidentifier():
                    self.add(
                        ("define", name, "params"),
                        f"define.{name}.params",
                        f"a parameter name must be a name, received {key!r}",
                        "write e.g. 'params: {n: 64}'",
                    )
                elif key == REPEAT_INDEX:
                    self.add(
                        ("define", name, "params", key),
                        f"define.{name}.params",
                        f"'{key}' is the repeat index of times:, not a parameter name",
                        "choose another name",
                    )
            usable[name] = define
        return usable
