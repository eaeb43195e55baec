"""Test-wide settings.

Tests use tiny tensors, where torch's worker threads cost more than they save and fight each other on a
shared 2-core machine: one thread keeps the suite fast and its timing steady.
"""

import torch

torch.set_num_threads(1)
