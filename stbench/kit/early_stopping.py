"""Early stopping with the best weights kept, shared by the methods that monitor a validation (or training)
loss each epoch: DCA, SpaFormer, GraphCpG, CpG Transformer (one best snapshot) and stPlus (its ``t_min``
lowest-loss snapshots). Written here because torch has no early-stopping callback; the rules are those
of Keras' ``EarlyStopping`` / ``ReduceLROnPlateau`` and PyTorch Lightning's, which the upstreams use.
"""

from __future__ import annotations

import math


def snapshot(model) -> dict:
    """A detached copy of ``model``'s state dict (tensors cloned, so later steps do not change it)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Plateau:
    """Patience counter on a monitored value (lower is better): an epoch improves when its value is below the
    best by more than ``min_delta`` (absolute, as Keras); ``step`` says True once ``patience`` epochs in a row
    have not improved, and starts counting again (Keras ``ReduceLROnPlateau``). ``patience`` 0/None: never."""

    def __init__(self, patience, min_delta: float = 0.0):
        self.patience, self.min_delta = int(patience or 0), float(min_delta)
        self.best, self.wait = math.inf, 0

    def step(self, value: float) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        if self.patience and self.wait >= self.patience:
            self.wait = 0
            return True
        return False


class EarlyStopping:
    """The best ``keep`` snapshots of a model by a monitored loss, and when to stop.

    ``step(value, model, epoch)`` records an epoch: a value below the worst kept one (or while fewer than
    ``keep`` are kept) is snapshotted (``model`` None: nothing is), the worst dropped when more than ``keep``; it returns True when
    ``patience`` epochs in a row have not beaten the best value by more than ``min_delta`` (None/0: never
    stop). ``restore(model)`` loads the best snapshot; ``snapshots`` lists (value, state) as kept
    (stPlus averages the predictions of its ``t_min`` lowest-loss models). ``best_epoch``: the epoch
    index of the best value; -1 before one. A NaN value never improves and is never kept."""

    def __init__(self, patience=None, min_delta: float = 0.0, keep: int = 1):
        if int(keep) < 1:
            raise ValueError(f"EarlyStopping: keep must be >= 1, got {keep}")
        self.patience, self.min_delta, self.keep = int(patience or 0), float(min_delta), int(keep)
        self.best, self.best_epoch, self.wait, self.epochs = math.inf, -1, 0, 0
        self.snapshots: list = []

    def step(self, value: float, model=None, epoch: int | None = None) -> bool:
        value = float(value)
        epoch = self.epochs if epoch is None else int(epoch)
        self.epochs += 1
        if model is not None and not math.isnan(value) and (
                len(self.snapshots) < self.keep or value < max(v for v, _ in self.snapshots)):
            if len(self.snapshots) >= self.keep:  # drop the worst (the first of equals)
                worst = max(range(len(self.snapshots)), key=lambda i: (self.snapshots[i][0], -i))
                self.snapshots.pop(worst)
            self.snapshots.append((value, snapshot(model)))
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            self.best_epoch = epoch
            return False
        self.wait += 1
        return bool(self.patience) and self.wait >= self.patience

    @property
    def best_state(self):
        """The state of the lowest kept value (the first of equals), or None."""
        if not self.snapshots:
            return None
        return min(enumerate(self.snapshots), key=lambda t: (t[1][0], t[0]))[1][1]

    def restore(self, model) -> bool:
        """Load the best snapshot into ``model``; False (and nothing loaded) when none was kept."""
        state = self.best_state
        if state is None:
            return False
        model.load_state_dict(state)
        return True
