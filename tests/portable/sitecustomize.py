"""Linux made to lack what Windows lacks, for the whole test suite (``nox -s portable``).

Put this folder on ``PYTHONPATH`` and every Python process started with it (the suite, and the
processes the suite starts: the CLI, servers, spawned workers) runs without ``os.pread``,
``os.preadv``, ``os.fork`` and ``os.register_at_fork``, and makes its processes by ``spawn``, as
on Windows (and by default on macOS). ims_store must work the same; the tests that need these
calls on purpose are marked ``posix_only`` and skip themselves here.
"""

import multiprocessing
import os

for _name in ("pread", "preadv", "fork", "register_at_fork", "forkpty"):
    if hasattr(os, _name):
        delattr(os, _name)

multiprocessing.set_start_method("spawn", force=True)
