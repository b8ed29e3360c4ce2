"""Shared pytest setup.

The tests run small tensors on a machine whose few cores are shared, where
PyTorch's intra-op thread pool costs more than it saves: measured, a forward
of the 'test' arch on 4x3x64x64 takes 0.006 s with one thread and 0.23 s with
two while another process keeps the cores busy. One thread unless
OMP_NUM_THREADS says otherwise.
"""
import os

try:
    import torch
except ImportError:  # the torch-free tests (tests/test_docs.py) still run
    torch = None

if torch is not None and 'OMP_NUM_THREADS' not in os.environ:
    torch.set_num_threads(1)
