"""The defaults that several tools share, in one place.

The CLI, training, prediction and the colour-class kernels import these, so a default changes
in one line. No heavy imports: every tool reads this module at start-up.
"""

from typing import Literal

Head = Literal["cls", "reg"]
"""The two heads: cls (colour classes, Zhang et al. 2016) and reg (a/b regression)."""
HEADS = ("reg", "cls")
Precision = Literal["auto", "fp32", "bf16", "fp16"]
"""Arithmetic of the network: auto is bf16 (or fp16) on CUDA, fp32 on the CPU."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
Schedule = Literal["plateau", "cosine"]
"""Learning-rate schedules of ``recolor train``."""
SCHEDULES = ("plateau", "cosine")

TEMPERATURE = 0.38
"""Annealed-mean temperature of the cls head (Zhang et al. 2016 and the seed): lower is more
vivid, 0 the mode."""

MAX_SIZE = 8192
"""Largest working shorter side of prediction: the network's activations grow with its square (a
2048 working side took 1.7 GB on the CPU, so 8192 about 26 GB)."""

MAX_WORKERS = 1024
"""Most threads or processes that ``-j`` and ``--threads`` may ask for: past the logical CPUs of
the largest machines (two sockets of 384), and short of what fails (libgomp could not start
20,000 threads and the process ended with exit 1 and no word; 100,000 loader processes of train
forked on for minutes, deaf to SIGTERM)."""

MAX_SATURATION = 10.0
"""Largest saturation of prediction: a/b scaled 10 times leave the sRGB gamut almost everywhere
already (and a float32 scale of 1e39 would be infinite)."""

T_MODE = 1e-30
"""Annealed-mean temperatures below this are the mode (T = 0): logits over about 1e8 / T overflow
float32 (inf - inf = NaN), and the annealed mean is the mode to within float32 long before."""

TRAIN_SIZE = 128
"""Training crop side in pixels; also the size assumed for a checkpoint that records none."""

GRID = 8.0
"""Spacing of the sRGB gamut classes in a/b units when no class set is given (``--grid``): the
395 classes the README describes (Zhang et al. 2016: 10, 313 classes)."""

K = 5
"""Nearest colour classes per pixel in soft-encoding (Zhang et al. 2016)."""

SIGMA = 5.0
"""Gaussian width of the soft-encoding weights and of the prior's smoothing, in a/b units."""

SIGMA_MIN = 0.01
"""Smallest Gaussian width (a/b units) of soft-encoding and smoothing: narrower is the hard
encoding (or no smoothing) to float64 precision on a class grid of 1 unit or more, and near 1e-154
``2 sigma^2`` underflows to 0 (a division by zero)."""

LAMBDA = 0.5
"""Mix of the class prior with the uniform distribution in the rebalancing weights (Zhang: 0.5)."""

HINT_LR = 1e-3
"""Learning rate of the hint layers of a model that takes hints (``recolor train --hints``)."""
