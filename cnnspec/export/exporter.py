"""``export_model``: every check that needs no TensorFlow first, then write, verify, commit.

The export is written under hidden temporary names in the destination's folder and renamed into
place only after its own runtime reproduced the Keras model's outputs, so an interrupted or
failed export leaves nothing at the destination.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..digest import DIGEST_KEY, model_digest
from ..errors import RunError
from ..modelio import ModelSource, check_model_source, meta_path_for
from ..outpaths import ctrl_c_is_never_lost, reason, shown
from ..versions import Versions
from . import formats
from .base import ExportFormat
from .destination import check_destination, move_into_place, remove, size_of
from .outputs import export_meta_outputs, load_export_source, outputs_of
from .verify import N_SAMPLES, OutputCheck, verify_outputs

TOLERANCE = 1e-4
#: Per quantisation: float16 keeps ~3 decimal digits; int8 weights (dynamic ranges) move a
#: softmax output by up to a few hundredths on a real model (0.0144 measured on LeNet-5 digits),
#: so 1e-2 refused honest exports; the top-1 agreement is printed beside it.
TOLERANCE_QUANTISED = {"float16": 1e-2, "dynamic": 5e-2}


TOP1 = "same top-1 class on {:.0%} of samples"
#: How a one-output export's agreement is printed (the share is of samples, pixels or labels).
AGREEMENT_WORDS = {"multilabel": "same labels at the threshold on {:.0%} of label decisions"}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how well it matched the Keras model."""

    path: Path
    meta_path: Path
    format: str
    quantize: str | None
    max_abs_diff: float  # the largest over every output
    top1_agreement: float | None  # the lowest over the outputs that decide (None: regression)
    tolerance: float
    seconds: float
    size_bytes: int
    outputs: tuple[OutputCheck, ...] = ()  # per output (one for a one-output model)

    def verified_lines(self) -> list[str]:
        """What ``cnnspec export`` prints about the verification (a line per output if several)."""
        if len(self.outputs) <= 1:
            agree, task = self.top1_agreement, self.outputs[0].task if self.outputs else ""
            same = "" if agree is None else ", " + AGREEMENT_WORDS.get(task, TOP1).format(agree)
            return [
                f"verified: max abs diff {self.max_abs_diff:.3g} vs Keras (tolerance "
                f"{self.tolerance:g}){same}; {self.seconds:.1f} s"
            ]
        tail = f" vs Keras (tolerance {self.tolerance:g}); {self.seconds:.1f} s"
        lines = [f"verified {len(self.outputs)} outputs{tail}:"]
        for c in self.outputs:
            same = "" if c.agreement is None else f", same decision on {c.agreement:.0%}"
            lines.append(f"  {c.name} ({c.task}, {'x'.join(map(str, c.shape[1:]))}): "
                         f"max abs diff {c.max_abs_diff:.3g}{same}")  # fmt: skip
        return lines


@dataclass(frozen=True)
class ExportPlan:
    """An export request checked without TensorFlow: the source, the format, the destination."""

    source: ModelSource
    format: ExportFormat
    dest: Path
    quantize: str | None


def default_destination(source: ModelSource, name: str, fmt: ExportFormat, quantize) -> Path:
    """``<run dir>/export/<name>[_dynamic|_float16].<ext>`` (a folder for SavedModel)."""
    base = (source.run_dir or source.path.parent) / "export"
    return base / fmt.default_name(name + (f"_{quantize}" if quantize else ""))


def plan_export(
    source_path: str | Path,
    fmt_name: str,
    out: str | Path | None = None,
    *,
    quantize: str | None = None,
    overwrite: bool = False,
) -> ExportPlan:
    """Every check of an export request that needs no TensorFlow (a refusal costs milliseconds):
    the format and quantisation, the destination, the source model's archive and metadata."""
    fmt = formats.get(fmt_name)
    if quantize is not None and quantize not in formats.QUANTIZE_MODES:
        raise RunError(
            f"unknown quantisation '{quantize}'",
            hint=f"use one of {', '.join(formats.QUANTIZE_MODES)}",
        )
    if quantize is not None and quantize not in fmt.quantize_modes:
        takes = [f.name for f in formats.REGISTRY.values() if quantize in f.quantize_modes]
        raise RunError(
            f"--quantize applies to {' and '.join(takes)} exports only, received --format "
            f"{fmt.name}"
        )
    if out is not None:  # before the model is looked at: a bad -o costs nothing
        check_destination(Path(out), fmt, overwrite)
    source, meta = check_model_source(source_path)
    if source.format != "keras":
        raise RunError(
            f"{source.path}: this command needs the Keras model, received a {source.format} export",
            hint="pass the run directory or the .keras file",
        )
    name = str((meta or {}).get("name") or source.path.stem or "model")
    dest = Path(out) if out is not None else default_destination(source, name, fmt, quantize)
    check_destination(dest, fmt, overwrite)
    return ExportPlan(source, fmt, dest, quantize)


def export_model(
    source_path: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    quantize: str | None = None,
    overwrite: bool = False,
    tolerance: float | None = None,
    n_samples: int = N_SAMPLES,
) -> ExportResult:
    """Export a run directory or ``.keras`` file to ``fmt``, verified, atomically (module doc)."""
    started = time.perf_counter()
    plan = plan_export(source_path, fmt, out, quantize=quantize, overwrite=overwrite)
    model, meta, source = load_export_source(plan.source.path)  # imports TensorFlow, quietly
    infos = outputs_of(meta, str(source.meta_path or source.path))
    if tolerance is None:
        tolerance = TOLERANCE_QUANTISED.get(quantize, 1e-2) if quantize else TOLERANCE
    dest, meta_dest = plan.dest, meta_path_for(plan.dest)
    token = uuid.uuid4().hex[:8]
    tmp = dest.with_name(f".{dest.name}.{token}.partial" + (plan.format.suffix or ""))
    tmp_meta = meta_dest.with_name(f".{meta_dest.name}.{token}.partial")
    # Ctrl-C anywhere before the rename leaves nothing behind and is never lost.
    with ctrl_c_is_never_lost() as check_ctrl_c:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            write(plan, model, tmp)
            checks = verify_outputs(model, tmp, plan.format, meta["input_shape"], n_samples, infos)
            diff, agreement = summary(checks)
            for check in checks:
                check_tolerance(plan, check, tolerance, len(checks))
            verification = {
                "max_abs_diff": diff,
                "top1_agreement": agreement,
                "tolerance": tolerance,
                "samples": n_samples,
                "runtime": plan.format.runtime.engine_name(),
                "outputs": [c.to_dict() for c in checks],
            }
            written = export_meta(plan, meta, source, tmp, verification)
            if "outputs" in meta:
                written["outputs"] = export_meta_outputs(meta, infos)
            text = json.dumps(written, indent=2)
            tmp_meta.write_text(text + "\n", encoding="utf-8")
            # Checked again: something may have appeared at the destination during the export.
            check_destination(dest, plan.format, overwrite)
            check_ctrl_c()  # a Ctrl-C that TensorFlow swallowed still stops the export here
            # The model is renamed last: a model at the destination always has its metadata.
            os.replace(tmp_meta, meta_dest)
            move_into_place(tmp, dest)
        except OSError as exc:
            raise RunError(f"cannot write {shown(dest)}: {reason(exc)}") from None
        finally:
            for leftover in (tmp, tmp_meta):
                remove(leftover)
    return ExportResult(
        path=dest,
        meta_path=meta_dest,
        format=plan.format.name,
        quantize=quantize,
        max_abs_diff=diff,
        top1_agreement=agreement,
        tolerance=tolerance,
        seconds=time.perf_counter() - started,
        size_bytes=size_of(dest),
        outputs=checks,
    )


def summary(checks: tuple[OutputCheck, ...]) -> tuple[float, float | None]:
    """(the largest max abs difference, the lowest agreement of the outputs that decide)."""
    diffs = [c.max_abs_diff for c in checks]
    diff = float("nan") if any(d != d for d in diffs) else max(diffs)
    agreements = [c.agreement for c in checks if c.agreement is not None]
    return diff, (min(agreements) if agreements else None)


#: What TensorFlow's C++ writers (which raise their own error types, not OSError) say when the
#: disk is full or the process may not write more.
_NO_SPACE = {
    "no space left on device": errno.ENOSPC,
    "file too large": errno.EFBIG,
    "disk quota exceeded": errno.EDQUOT,
}


def write(plan: ExportPlan, model, tmp: Path) -> None:
    """The format's writer; a full disk, however the writer reports it, is an OSError."""
    try:
        plan.format.write(model, tmp, plan.quantize)
    except (RunError, OSError, KeyboardInterrupt):
        raise
    except Exception as exc:
        text = str(exc).lower()
        for words, code in _NO_SPACE.items():
            if words in text:
                raise OSError(code, os.strerror(code)) from None
        raise


def check_tolerance(plan: ExportPlan, check: OutputCheck, tolerance: float, n: int = 1) -> None:
    """Refuse an export whose output differs from Keras' by more than the tolerance (or NaN)."""
    diff, agreement = check.max_abs_diff, check.agreement
    if diff <= tolerance:
        return
    hint = (
        "quantisation changes outputs; check accuracy with cnnspec evaluate on the "
        "export (written with --tolerance) or use --quantize float16"
        if plan.quantize
        else "report it with the model's spec; try another format"
    )
    which = f" '{check.name}' ({check.task})" if n > 1 else ""
    same = "" if agreement is None else f", same top-1 class on {agreement:.0%} of samples"
    raise RunError(
        f"export verification failed: {plan.format.name} output{which} differs from Keras by "
        f"{diff:.3g} (tolerance {tolerance:g}{same}); nothing was written to {plan.dest}",
        hint=hint,
    )


def export_meta(
    plan: ExportPlan, meta: dict[str, Any], source: ModelSource, written: Path, verification
) -> dict[str, Any]:
    """The export's metadata: the run's (its training versions included), what wrote the export,
    the digest of the bytes written, and how the export was verified."""
    return {
        **meta,
        "exported_with": Versions.current().to_dict(),
        "format": plan.format.name,
        "quantize": plan.quantize,
        "source": str(source.path),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        DIGEST_KEY: model_digest(written),
        "verification": verification,
    }
