"""Test entry point for torchrun: `captionkit.cli` whose rank named by CAPTIONKIT_TEST_KILL_RANK kills itself with
SIGKILL right after committing its first shard of bulk captions (a deterministic stand-in for a node lost mid-run)."""

import os
import signal
import sys

import captionkit.inference.bulk as bulk
from captionkit.cli import main

_commit = bulk._commit


def _commit_then_die(*args, **kwargs):
    _commit(*args, **kwargs)
    if os.environ.get("RANK") == os.environ.get("CAPTIONKIT_TEST_KILL_RANK"):
        os.kill(os.getpid(), signal.SIGKILL)


bulk._commit = _commit_then_die

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
