"""The error types users see.

Every problem a user can cause is reported as one line:
``file:line:col: <path> <kind>: <what>, received <value>. Hint: <hint>``.
``SpecError`` is a bad spec (exit code 2); ``RunError`` is a run that failed (exit code 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file and a 1-based line/column (either may be unknown)."""

    file: str = "<spec>"
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Problem:
    """One problem in a spec."""

    location: Location
    message: str
    hint: str = ""
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: " + (f"{self.path}: " if self.path else "")
        text = where + _sentence(self.message)
        if self.hint:
            text += " Hint: " + _sentence(self.hint)
        return text


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


class CnnspecError(Exception):
    """Base class of every error cnnspec reports to users."""

    exit_code = 1


@dataclass
class SpecError(CnnspecError):
    """A spec (or its overrides) is invalid. Carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)
    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    @classmethod
    def single(
        cls, message: str, *, hint: str = "", location: Location | None = None, path: str = ""
    ) -> SpecError:
        return cls([Problem(location or Location(), message, hint, path)])


class RunError(CnnspecError):
    """A run (training, export, prediction, ...) failed for a reason the user can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        text = _sentence(message)
        if hint:
            text += " Hint: " + _sentence(hint)
        super().__init__(text)


#: Keras/PyTorch argument names users type out of habit -> the notation's names.
SYNONYMS = {
    "strides": "s",
    "stride": "s",
    "padding": "p",
    "kernel_size": "K",
    "kernel": "K",
    "k": "K",
    "filters": "n_K",
    "n_k": "n_K",
    "out_channels": "n_K",
    "activation": "act",
    "dilation": "d",
    "dilation_rate": "d",
    "use_bias": "bias",
    "pool_size": "K",
    "depth_multiplier": "multiplier",
    "epsilon": "eps",
    "out_features": "units",
    "rate": "rate",
}


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A 'Did you mean ...?' hint for a misspelt word, or '' when nothing is close."""
    import difflib

    if word in SYNONYMS and SYNONYMS[word] in choices:
        return f"did you mean '{SYNONYMS[word]}'?"
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
