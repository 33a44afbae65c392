"""``python -m tests.launch FAULTS_FOLDER ARGS...``: the ``tlsweep`` command line with ``tests.faults.Faults``
hooks on its sweeps (what ``tlsweep ARGS...`` does otherwise)."""

import sys

from tlsweep.cli import app

from .faults import Faults

if __name__ == "__main__":
    app(args=sys.argv[2:], prog_name="tlsweep", obj={"trial_hooks": Faults(sys.argv[1])})
