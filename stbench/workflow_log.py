"""Every workflow step writes its own log: ``logged(path)`` sends stdout, stderr, warnings and
``logging`` there for the duration of a Snakemake script (the path comes from the rule's ``log:``)."""

from __future__ import annotations

import contextlib
import logging
import traceback
from pathlib import Path


@contextlib.contextmanager
def logged(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
        except BaseException:
            fh.write(traceback.format_exc())
            raise
        finally:
            root.removeHandler(handler)
            logging.captureWarnings(False)

