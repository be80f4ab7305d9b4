"""A model's digest, recorded in its metadata: a model found beside another model's metadata
(a copied file, a same-shape model from another run) is refused instead of predicting with the
other model's class names.

``cnnspec train`` records the digest of ``model.keras`` in ``meta.json`` when it saves the model;
``cnnspec export`` records the export's in ``<export>.meta.json``. Metadata without a digest
(written by earlier versions) is trusted as before. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import RunError

#: The key of the model's SHA-256 in its metadata (``meta.json``, ``<export>.meta.json``).
DIGEST_KEY = "model_sha256"
_digests: dict[tuple[str, int, int], str] = {}


def model_digest(path: str | Path) -> str:
    """SHA-256 of a model file, or of a model folder (every file's relative path and bytes)."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    total = hashlib.sha256()
    for f in files:
        st = f.stat()
        key = (str(f.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _digests:  # a model read twice in one command is hashed once
            h = hashlib.sha256()
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            _digests[key] = h.hexdigest()
        name = f.relative_to(path).as_posix() if path.is_dir() else ""
        total.update(f"{name}\0{_digests[key]}\n".encode())
    return total.hexdigest()


def record_model_digest(model_path: str | Path, meta_path: str | Path) -> None:
    """Write ``model_path``'s digest into its metadata file (atomically)."""
    from .outpaths import write_text_atomic

    meta_path = Path(meta_path)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta[DIGEST_KEY] = model_digest(model_path)
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")


def check_digest(model_path: Path, meta_path: Path, meta: dict[str, Any]) -> None:
    """Refuse a model whose bytes are not those its metadata recorded, naming both files."""
    recorded = meta.get(DIGEST_KEY)
    if recorded is None:
        return
    try:
        actual = model_digest(model_path)
    except OSError as exc:
        raise RunError(f"{model_path}: cannot read the model: {exc.strerror or exc}") from None
    if actual != recorded:
        raise RunError(
            f"{model_path} is not the model {meta_path} describes (its SHA-256 "
            f"{actual[:12]}... differs from the {str(recorded)[:12]}... recorded there): its "
            "class names would be another model's",
            hint="keep each model beside its own metadata (re-export it, or pass its own run "
            "directory)",
        )
