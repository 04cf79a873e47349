"""Seeds derived by key from the one ``--seed``.

A study's second worker, or a training run's second repeat, needs a seed of its own. Adding
numbers (``seed + worker``) would make worker 1 of a ``--seed 42`` study draw exactly what
worker 0 of a ``--seed 43`` study draws; here each derived seed comes from numpy's
:class:`~numpy.random.SeedSequence` with a spawn key naming what it is for, so derived
seeds of different ``--seed`` values never coincide by construction. Index 0 is ``seed``
itself: the first worker and the first repeat keep the sequence ``--seed`` always gave.
"""

from __future__ import annotations

import numpy as np

#: Spawn-key streams, one per use (never reuse or renumber one: seeds would change).
WORKER = 1
REPEAT = 2


def derived_seed(seed: int, stream: int, index: int) -> int:
    """The seed of the ``index``-th worker or repeat (``stream``) of a run seeded ``seed``.

    Parameters
    ----------
    seed : int
        The run's ``--seed``.
    stream : int
        What the seed is for: :data:`WORKER` or :data:`REPEAT`.
    index : int
        0 gives ``seed`` itself; each other index a 32-bit seed of its own.
    """
    if index == 0:
        return seed
    sequence = np.random.SeedSequence(seed, spawn_key=(stream, index))
    return int(sequence.generate_state(1)[0])
