"""What every long job shares: precision and memory format for the hardware, progress
and batch iteration.

Scoring, baseline training and the architecture search use only the names below.
"""

from .batches import iterate_batches, to_float_images
from .batches import Progress
from .precision import autocast, cpu_bfloat16_decision, cpu_has_native_bfloat16, native_bfloat16, resolve_amp, use_channels_last

__all__ = [
    "Progress",
    "autocast",
    "cpu_bfloat16_decision",
    "cpu_has_native_bfloat16",
    "iterate_batches",
    "native_bfloat16",
    "resolve_amp",
    "to_float_images",
    "use_channels_last",
]
