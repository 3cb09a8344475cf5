"""What every long job shares: where it runs, its precision, progress, batches and checkpoints.

- :mod:`.device`: the device rule (no device: the model's, else CUDA when available,
  else the CPU) and the thread count;
- :mod:`.precision`: bfloat16 autocast and the channels-last format where they pay;
- :mod:`.progress`: a tqdm bar on a terminal, plain lines in a log;
- :mod:`.batches`: batches of a dataset and the batched crop-and-flip augmentation;
- :mod:`.checkpoint`: atomic checkpoints, and resuming only the run that wrote them.

Scoring, baseline training and the architecture search use only the names below.
"""

from .batches import dataset_image_size, iterate_batches, random_crop_flip, to_float_images
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_checkpoint,
    resume_state,
    run_differences,
    save_checkpoint,
)
from .device import default_device, resolve_device, set_threads
from .precision import (
    autocast,
    cpu_bfloat16_decision,
    cpu_flags,
    cpu_has_native_bfloat16,
    native_bfloat16,
    resolve_amp,
    use_channels_last,
)
from .progress import Progress

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Progress",
    "autocast",
    "cpu_bfloat16_decision",
    "cpu_flags",
    "cpu_has_native_bfloat16",
    "dataset_image_size",
    "default_device",
    "iterate_batches",
    "load_checkpoint",
    "native_bfloat16",
    "random_crop_flip",
    "resolve_amp",
    "resolve_device",
    "resume_state",
    "run_differences",
    "save_checkpoint",
    "set_threads",
    "to_float_images",
    "use_channels_last",
]
