"""Peak training memory of the backbone, without and with ``with_cp``.

GPU: ``torch.cuda.max_memory_allocated`` above what was allocated before
the step. CPU: in a fresh subprocess (``python -m
convnext_dense.analysis.memory SPEC``), the resident-size high-water mark
(VmHWM, reset before the step) over the resident size before the step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable

import torch

from convnext_dense.paths import REPO_ROOT

from .speed import backbone_step, build_backbone
from .timing import DeviceSettings


def _status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024  # the file says kB
    raise KeyError(field)


def memory_child(spec: dict) -> dict:
    """Peak memory of one backbone training step, in this fresh process.

    The peak is the kernel's resident-size high-water mark, VmHWM, which
    writing 5 to /proc/self/clear_refs resets to the current size just
    before the step. (``getrusage``'s ``ru_maxrss`` cannot be used: Linux
    carries it across ``execve``, so a child starts with its parent's
    high-water mark.)
    """
    torch.set_num_threads(spec['threads'])
    torch.manual_seed(0)
    model = build_backbone('ours', spec['arch'], with_cp=spec['with_cp'])
    model.train()
    batch, height, width = spec['size']
    x = torch.randn(batch, 3, height, width)
    step = backbone_step(model, x, train=True, amp_dtype=None)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass  # then VmHWM also holds the model-building peak
    before = _status_bytes('VmRSS')
    hwm_before = _status_bytes('VmHWM')
    step()
    peak = _status_bytes('VmHWM')
    return dict(peak_bytes=peak - before,
                masked_by_earlier_peak=hwm_before >= peak)


def measure_memory(settings: DeviceSettings, arch: str, threads: int,
                   log: Callable[[str], None]) -> dict:
    """Peak extra memory of a forward+backward, without and with with_cp."""
    batch, height, width = settings.mem_size
    result = dict(device=settings.device.type, size=settings.mem_size)
    for with_cp in (False, True):
        key = 'with_cp' if with_cp else 'plain'
        if settings.device.type == 'cuda':
            torch.manual_seed(0)
            model = build_backbone('ours', arch, with_cp=with_cp)
            model.to(settings.device).train()
            x = torch.randn(batch, 3, height, width, device=settings.device)
            step = backbone_step(model, x, train=True, amp_dtype=None)
            step()  # the first step allocates the gradients once
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            result[key] = torch.cuda.max_memory_allocated() - base
            del model, x, step
            torch.cuda.empty_cache()
        else:
            spec = dict(arch=arch, with_cp=with_cp, size=settings.mem_size,
                        threads=threads)
            # the child imports this very package, whatever the installed
            # one (an editable install may point at another checkout)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')])))
            out = subprocess.run(
                [sys.executable, '-m', __name__, json.dumps(spec)],
                check=True, capture_output=True, text=True, env=env).stdout
            child = json.loads(out.strip().splitlines()[-1])
            if child['masked_by_earlier_peak']:
                result['masked'] = True
                log(f'memory ({key}): the step did not exceed the process\'s '
                    'earlier peak; the number is meaningless')
            result[key] = child['peak_bytes']
        log(f'{settings.device.type} memory {key}: '
            f'{result[key] / 2**20:.1f} MiB')
    result['reduction'] = 1 - result['with_cp'] / result['plain']
    result.setdefault('masked', False)
    return result


if __name__ == '__main__':
    # the CPU measurement's fresh process: SPEC in, one JSON line out
    print(json.dumps(memory_child(json.loads(sys.argv[1]))))
