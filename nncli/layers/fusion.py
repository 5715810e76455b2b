"""The one rewrite Sequential makes to the layers it runs: a conv2d's ReLU moves after the max-pool that follows.

ReLU is monotone, so it commutes with max: relu(max(window)) = max(relu(window)),
and the gradient agrees too (0 where the window's maximum is <= 0, else routed to
the same winner). So conv2d(relu) → maxpool2d runs as conv2d → maxpool2d → relu,
bit for bit the same, with the ReLU on 4× fewer values (2×2 windows).

The layers keep their configured options: the conv still describes, initialises
(He) and saves itself with its ReLU, and the pool without one, so `nncli summary`
and the checkpoints show the network as written. Only where the ReLU runs changes:
the conv stops applying it (`activation_deferred`) and the pool applies it after
pooling (`post_activation`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .activations import ReLU
from .base import Layer
from .conv import Conv2D
from .pooling import MaxPool2D


def fuse(layers: Sequence[Layer]) -> None:
    """Move the ReLU of every conv2d(relu) → maxpool2d pair into the pool, in place.

    Not when the conv has an activity regularizer: its penalty reads the conv's own (activated) output.
    """
    for conv, pool in zip(layers, layers[1:]):
        if (
            isinstance(conv, Conv2D)
            and isinstance(conv.activation, ReLU)
            and conv.activity_regularizer is None
            and type(pool) is MaxPool2D
            and pool.post_activation is None
        ):
            conv.activation_deferred = True
            pool.post_activation = conv.activation
