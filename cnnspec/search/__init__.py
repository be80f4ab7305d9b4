"""``cnnspec search``: architecture and recipe search declared in the spec (built on Optuna).

``study`` runs trials (budget check before anything is built, training, pruning, storage),
``report`` writes what a search leaves behind, ``runner`` ties them to the command.
"""

from .runner import finish, prepare, run, worker
from .study import Plan

__all__ = ["Plan", "finish", "prepare", "run", "worker"]
