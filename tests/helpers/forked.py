"""Python runs forked from an interpreter that has imported the stack once.

A tool run in a fresh interpreter spends 6-9 s of CPU importing torch,
mmengine, mmdet and mmsegmentation before it reads its first argument; the
suite runs the tools dozens of times. :func:`run_python` behaves as
``subprocess.run([sys.executable, *args], capture_output=True, text=True)``
(return code, stdout, stderr, ``subprocess.TimeoutExpired``), but the
process is a fork of one server per test process that imported that stack
once, with its own working directory, environment, ``sys.argv``, address
space limit and thread count.

What a fork cannot show, a fresh interpreter must check: output or warnings
printed while the stack imports (tests/engine/test_quiet.py), import order
(tests/test_architecture.py), interpreter start-up (the launch scripts).
Those tests start their own processes.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def repo_env() -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH
    and one intra-op thread unless OMP_NUM_THREADS says otherwise (on a
    shared 2-core machine a second thread makes small models many times
    slower, not faster): what the tools, demos and the server run with."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


# The server: imports the stack, then forks one child per request line
# (JSON: args, cwd, env, memory_limit, out, err) and answers with the
# child's pid, then its exit status (negative: the signal that ended it).
SERVER = textwrap.dedent('''
    import ctypes, json, os, resource, runpy, signal, sys, traceback
    import torch, mmengine.runner, mmdet.apis, mmseg.apis  # noqa
    import convnext_dense.apis.cli, convnext_dense.apis.demo  # noqa
    import convnext_dense.apis.export, convnext_dense.apis.inference  # noqa
    # mmdet's and mmseg's model indexes, parsed once (convnext_dense.
    # config_cache) for every child
    from mmengine.config import Config
    for demo in ('cascade_convnext_demo.py', 'upernet_convnext_demo.py'):
        Config.fromfile(os.path.join('configs', 'demo', demo))
    # a thread would not survive the fork: refuse to serve if one started
    threads = os.listdir('/proc/self/task')
    assert len(threads) == 1, threads
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the tests
    answer = sys.stdout  # fd 1 of the server; each child points its own

    def child(request):
        os.setpgid(0, 0)
        libc.prctl(1, signal.SIGKILL)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        if request['memory_limit']:
            limit = request['memory_limit']
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        # what a fresh interpreter would put on sys.path from PYTHONPATH
        path = os.environ.get('PYTHONPATH', '').split(os.pathsep)
        for entry in reversed(path):
            if entry and entry not in sys.path:
                sys.path.insert(1, entry)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, name in ((1, 'out'), (2, 'err')):
            os.dup2(os.open(request[name], os.O_WRONLY | os.O_TRUNC), fd)
        torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
        args = request['args']
        code = 0
        try:
            if args[0] == '-c':
                sys.argv = ['-c', *args[2:]]
                sys.path[0] = ''
                exec(compile(args[1], '<string>', 'exec'),
                     {'__name__': '__main__', '__builtins__': __builtins__})
            else:
                sys.argv = list(args)
                sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
                runpy.run_path(args[0], run_name='__main__')
        except SystemExit as done:
            if done.code is None or isinstance(done.code, int):
                code = done.code or 0
            else:
                print(done.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            import atexit, logging
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(json.dumps(pid), file=answer, flush=True)  # nothing buffered
        status = os.waitpid(pid, 0)[1]
        code = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                else os.WEXITSTATUS(status))
        print(json.dumps(code), file=answer, flush=True)
''')

_server: subprocess.Popen | None = None
_lock = threading.Lock()


def _start() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen(
            [sys.executable, '-c', SERVER], cwd=REPO, env=repo_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        atexit.register(_server.kill)
    return _server


def _read(server: subprocess.Popen, timeout: float | None):
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    if not ready:
        return None
    line = server.stdout.readline()
    if not line:
        raise RuntimeError('the preloaded Python server ended')
    return json.loads(line)


def run_python(args: list[str], cwd: str, env: dict[str, str],
               timeout: float, memory_limit: int | None = None
               ) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with ``env``, forked from the server.

    Args:
        memory_limit: Bytes of address space (``RLIMIT_AS``) the run may
            take; None for no limit.
    """
    with _lock, tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, 'out'), os.path.join(tmp, 'err')
        for path in (out, err):
            open(path, 'w').close()
        server = _start()
        server.stdin.write(json.dumps(dict(
            args=list(args), cwd=str(cwd), env=dict(env), out=out, err=err,
            memory_limit=memory_limit)) + '\n')
        server.stdin.flush()
        pid = _read(server, None)
        code = _read(server, timeout)
        if code is None:  # past the time limit: end the run and its children
            os.killpg(pid, signal.SIGKILL)
            _read(server, None)
        with open(out) as f_out, open(err) as f_err:
            stdout, stderr = f_out.read(), f_err.read()
    command = [sys.executable, *args]
    if code is None:
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
    return subprocess.CompletedProcess(command, code, stdout, stderr)
