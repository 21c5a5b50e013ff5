"""Where a rule script imports this repository's packages from, checked before any job runs.

The rule scripts import ``lora_tradeoff`` and ``custom_metrics`` as installed packages: ``make venv``
installs this checkout into ``.venv`` (editable), and each conda env of ``envs/`` installs it after it
is created (``envs/install-package.sh``, Snakemake's post-deploy script). Without ``--use-conda`` a
rule script runs with the interpreter that runs Snakemake, so the Snakefile asks that interpreter,
in a fresh process as a rule script would be, where it finds the packages (:func:`import_problem`),
each time the Snakefile is read (dry runs and ``--lint`` included). Two cases stop it: the packages
are installed from another checkout (the jobs would run that checkout's code, silently: an
installed copy comes before anything else on a script's path), or they are not installed. In the
second case a local job would still find them, at the very end of its path, because Snakemake
appends its own ``sys.path`` (which holds the checkout, for the Snakefile) to every script's, to
unpickle the ``snakemake`` object; that is a fallback of Snakemake's, mapped differently in
containers, and not what the scripts should rest on.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

PACKAGES = ("lora_tradeoff", "custom_metrics")

# Prints {package: folder it would be imported from, or None}; find_spec does not run the package.
_WHERE = (
    "import json, importlib.util as u, os\n"
    "specs = {n: u.find_spec(n) for n in %r}\n"
    "print(json.dumps({n: s and s.origin and os.path.dirname(s.origin) for n, s in specs.items()}))"
)


def import_problem(repo: Path, python: str, cwd: Path) -> str | None:
    """None when ``python`` imports every package of :data:`PACKAGES` from ``repo``; else what is wrong and the fix.

    ``python`` runs in ``cwd`` with ``-P`` (Python 3.11+: no script or working folder before
    site-packages), as Snakemake runs a rule script: ``sys.executable`` in the working directory, the
    script's own folder only at the end of ``sys.path``. About 50 ms.
    """
    repo = Path(repo).resolve()
    install = (
        f"Run this checkout's own environment (`make venv` in {shlex.quote(str(repo))}, then `.venv/bin/snakemake`), "
        f"or install this checkout into that one: `{shlex.quote(python)} -m pip install --no-deps -e "
        f"{shlex.quote(str(repo))}` (add --no-build-isolation where no package index is reachable: it then uses "
        "the installed setuptools), or run with --use-conda (each env of envs/ installs it)."
    )
    proc = subprocess.run(
        [python, "-P", "-c", _WHERE % (PACKAGES,)], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return f"{python} could not be asked where it imports {', '.join(PACKAGES)} from:\n{proc.stderr[-2000:]}"
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    missing = [name for name, folder in found.items() if folder is None]
    if missing:
        return f"The rule scripts run with {python}, which cannot import {', '.join(missing)}. {install}"
    for name, folder in found.items():
        if Path(folder).resolve() != repo / name:
            return (
                f"{python} imports {name} from {Path(folder).resolve()}, not from this workflow's checkout "
                f"{repo}: the rule scripts would run another checkout's code. {install}"
            )
    return None
