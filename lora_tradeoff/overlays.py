"""Config files stacked with ``--configfile``: their ``training.runs`` merge by run name.

Snakemake merges ``config.yaml`` and each ``--configfile`` file (then ``--config``) mapping by
mapping, but a list replaces the whole list before it: an overlay listing one run would drop every
other run and reset the keys it does not repeat to the schema's defaults, silently. The Snakefile
therefore rebuilds ``config.training.runs`` from the files' own run lists (:func:`merge_runs`,
read before Snakemake merged them), in the order Snakemake reads them (:func:`layer_paths`):

* a run whose ``name`` an earlier file defines is updated key by key: each key given replaces
  that key's value (a list or a ``sweep`` as a whole); the keys not given keep their values;
* a run of a new name is added after the others, with only its own keys (and the schema's defaults);
* ``drop: true`` (and no other key) removes the run of that name; naming a run that no earlier
  file defines is an error, so a typo cannot leave a run in the study;
* ``training.replace_runs: true`` makes a file's run list replace the runs before it. The model
  configs of ``config/`` (and ``config/frontier.yaml``) set it: each describes a whole study,
  whose runs must not inherit keys such as the demo's ``max_steps: 12``.

Removal is a ``drop: true`` entry rather than a ``training.keep_runs`` list: it sits in the same
list as the changes and additions, names only the run it removes (an overlay that adds a run need
not restate every run it keeps), stacks across several overlays, and a misspelt name is an error
instead of a silently emptied study. The two keys are read here, per file, and never reach the
merged config; their types are those of ``schemas/config.schema.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lora_tradeoff.config_check import describe, run_schema, with_defaults

DROP = "drop"
REPLACE_RUNS = "replace_runs"


@dataclasses.dataclass(frozen=True)
class Layer:
    """One config file (or ``--config``) as written, before any merging."""

    source: str  # how messages name it: the file's path, or "--config"
    config: Any


@dataclasses.dataclass
class RunChanges:
    """What one layer did to the run list before it."""

    source: str
    replaced: list[str] | None = None  # the names it replaced (replace_runs: true), else None
    changed: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # run -> "key old -> new"
    added: list[str] = dataclasses.field(default_factory=list)
    near: dict[str, str] = dataclasses.field(default_factory=dict)  # added run -> the earlier run its name is close to
    dropped: list[str] = dataclasses.field(default_factory=list)
    result: list[str] = dataclasses.field(default_factory=list)  # the run names after this layer
    listed: list[str] = dataclasses.field(default_factory=list)  # the names this layer's entries set keys of

    def describe(self) -> str:
        """One line, e.g. ``my.yaml: training.runs: changed r16_qv (learning_rate 0.0005 -> 0.001); now r16_qv``."""
        parts = []
        if self.replaced is not None:
            parts.append(f"replaced the runs before it ({', '.join(self.replaced) or 'none'})")
        parts += [f"changed {name} ({'; '.join(keys)})" for name, keys in self.changed.items()]
        if self.added and self.replaced is None:
            # A misspelt name adds a run (trained from the schema's defaults) instead of changing one.
            named = [
                f"{name} (a new run; did you mean {self.near[name]}?)" if name in self.near else name
                for name in self.added
            ]
            parts.append(f"added {', '.join(named)}")
        if self.dropped:
            parts.append(f"dropped {', '.join(self.dropped)}")
        return f"{self.source}: training.runs: {'; '.join(parts) or 'no change'}; now {', '.join(self.result)}"


def layer_paths(
    workflow_configfiles: Sequence[str | Path],
    overwrite_configfiles: Sequence[str | Path],
    replace_workflow_config: bool = False,
) -> list[Path]:
    """The config files in the order Snakemake merges them, each once.

    ``workflow_configfiles`` is Snakemake's ``workflow.configfiles``: the ``--configfile`` files
    followed by the Snakefile's ``configfile:`` (present only where it exists);
    ``overwrite_configfiles`` is ``workflow.overwrite_configfiles``, the ``--configfile`` files.
    Snakemake reads the Snakefile's file first and merges the others over it, in their order
    (``--replace-workflow-config`` leaves the Snakefile's out). A file given twice (the workflow
    tests pass the working directory's ``config.yaml`` with ``--configfile`` too) is read once,
    at its first place.
    """
    overlays = [Path(path) for path in overwrite_configfiles]
    given = {path.resolve() for path in overlays}
    base = [] if replace_workflow_config else [Path(p) for p in workflow_configfiles if Path(p).resolve() not in given]
    ordered, seen = [], set()
    for path in [*base, *overlays]:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            ordered.append(path)
    return ordered


def _layer_runs(layer: Layer) -> tuple[list[Any], bool] | None:
    """The layer's run entries and its replace_runs, or None when it lists no runs."""
    training = layer.config.get("training") if isinstance(layer.config, Mapping) else None
    if isinstance(training, Mapping) and "runs" not in training and training.get(REPLACE_RUNS):
        raise ValueError(
            f"{layer.source}: training.{REPLACE_RUNS}: true without training.runs: list the runs that replace "
            "the earlier ones, or remove replace_runs"
        )
    if not isinstance(training, Mapping) or "runs" not in training:
        return None
    runs = training["runs"]
    if not isinstance(runs, list):
        raise ValueError(
            f"{layer.source}: training.runs: {runs!r} is not a list of runs; write e.g. "
            "runs: [{name: r16_qv, learning_rate: 1.0e-3}]"
        )
    return runs, training.get(REPLACE_RUNS, False)


def _check_type(layer: Layer, key: str, value: Any, schema: dict[str, Any]) -> None:
    _, errors = with_defaults(value, schema)
    if errors:
        raise ValueError(f"{layer.source}: " + "; ".join(describe(error, schema, key) for error in errors))


_UNSET = object()  # a key the run did not have before


def _value(value: Any) -> str:
    return "(unset)" if value is _UNSET else repr(value) if isinstance(value, str) else str(value)


def merge_runs(layers: Sequence[Layer], schema: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, list[RunChanges]]:
    """``config.training.runs`` merged by name over ``layers`` (first the base config), and what each layer did.

    ``schema`` is the whole config schema (:func:`lora_tradeoff.config_check.load_schema`): it gives
    the types of ``drop`` and ``replace_runs``. Returns ``(None, [])`` when no layer lists runs, and
    one :class:`RunChanges` per layer that lists runs. The merged runs carry no ``drop`` key; other
    keys are left as written for the schema check that follows. Raises ValueError naming the file
    and the entry for: a run list that is not a list, an entry without a name, a name listed twice
    in one file, ``drop`` with other keys or naming no earlier run, ``drop`` in a file that
    replaces the runs before it.
    """
    training_schema = schema["properties"]["training"]["properties"]
    drop_schema = run_schema(schema)["properties"][DROP]
    runs: dict[str, dict[str, Any]] | None = None
    changes = []
    dropped_by: dict[str, str] = {}  # run name -> the file that dropped it
    for layer in layers:
        found = _layer_runs(layer)
        if found is None:
            continue
        entries, replace = found
        _check_type(layer, f"training.{REPLACE_RUNS}", replace, training_schema[REPLACE_RUNS])
        replace = replace or runs is None
        record = RunChanges(layer.source, replaced=list(runs) if replace and runs is not None else None)
        merged: dict[str, dict[str, Any]] = {} if replace else dict(runs or {})
        listed: set[str] = set()
        for index, entry in enumerate(entries):
            where = f"{layer.source}: training.runs[{index}]"
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if name is not None and not isinstance(name, str):
                raise ValueError(f'{where}: name {name!r} is not text; write it in quotes (name: "{name}")')
            if not isinstance(name, str):
                raise ValueError(
                    f"{where}: {entry!r} has no name; each run is a mapping with a name: the run it changes, "
                    "adds or drops (e.g. {name: r16_qv, learning_rate: 1.0e-3})"
                )
            if name in listed:
                raise ValueError(f"{where}: {name} is listed twice in this file; list each run once")
            listed.add(name)
            drop = entry.get(DROP, False)
            _check_type(layer, f"training.runs[{index}].{DROP}", drop, drop_schema)
            keys = {key: value for key, value in entry.items() if key != DROP}
            if drop and replace and runs is not None:
                raise ValueError(
                    f"{where}: drop: true in a file with training.replace_runs: true, whose list already "
                    f"replaces every earlier run; leave the {name} entry out"
                )
            if drop and runs is None:
                raise ValueError(f"{where}: drop: true in the first config file, which has no earlier run to drop")
            if drop:
                if set(keys) != {"name"}:
                    others = ", ".join(sorted(str(key) for key in keys if key != "name"))
                    raise ValueError(
                        f"{where}: drop: true with other keys ({others}); either drop {name} "
                        "(name and drop: true only) or change it (no drop)"
                    )
                if name not in merged and name in dropped_by:
                    raise ValueError(f"{where}: drop: true names {name}, which {dropped_by[name]} already dropped")
                if name not in merged:
                    raise ValueError(
                        f"{where}: drop: true names {name}, which no earlier config file defines; runs defined: "
                        f"{', '.join(merged) or 'none'} (a sweep's or a seeds run's points are dropped by the "
                        "name configured, e.g. r64_all, not r64_all_lr1e-4)"
                    )
                del merged[name]
                record.dropped.append(name)
                dropped_by[name] = layer.source
            elif name in merged and not replace:
                before = merged[name]
                diffs = [
                    f"{key} {_value(before.get(key, _UNSET))} -> {_value(value)}"
                    for key, value in keys.items()
                    if key != "name" and before.get(key, _UNSET) != value
                ]
                merged[name] = {**before, **keys}
                record.listed.append(name)
                if diffs:
                    record.changed[name] = diffs
            else:
                if not replace and (close := difflib.get_close_matches(name, list(merged), n=1, cutoff=0.8)):
                    record.near[name] = close[0]
                merged[name] = dict(keys)
                record.added.append(name)
                record.listed.append(name)
        for entry in entries:
            name = entry["name"]
            unused = unused_values(merged[name], entry) if name in merged else None
            if unused:
                raise ValueError(f"{layer.source}: training.runs: {name}: {unused}")
        runs = merged
        record.result = list(merged)
        changes.append(record)
    return (None if runs is None else list(runs.values())), changes


def unused_values(run: Mapping[str, Any], entry: Mapping[str, Any]) -> str | None:
    """Why a value that ``entry`` (one file's entry for ``run``, already merged into it) sets would
    never be used, or None: a key the run sweeps (the sweep's values replace it), or ``seed`` beside
    ``seeds`` (each replicate gets its own seed).

    Such a value would be logged as changed and then silently dropped: e.g. an overlay that changes
    the learning rate of a run an earlier file sweeps over learning rates. A sweep or ``seeds`` that
    replaces a value an earlier file set is what the user asked for, and passes.
    """
    sweep = run.get("sweep")
    if isinstance(sweep, Mapping):
        both = [key for key in sweep if key in entry]
        if both:
            key = both[0]
            return (
                f"{key} {_value(run[key])} is never used: sweep.{key} replaces it with {sweep[key]}; "
                f"remove {key}, or change the values in sweep.{key}"
            )
    if "seeds" in run and "seed" in entry:
        return (
            f"seed {run['seed']} is never used: seeds {run['seeds']} gives each replicate its own seed; "
            "remove seed, or change seeds"
        )
    return None


def source_name(path: str | Path, cwd: Path | None = None) -> str:
    """How messages name a config file: relative to ``cwd`` (the working directory) where it lies below it."""
    path, cwd = Path(path), Path.cwd() if cwd is None else cwd
    resolved = path.resolve() if path.is_absolute() else (cwd / path).resolve()
    try:
        return str(resolved.relative_to(cwd.resolve()))
    except ValueError:
        return str(resolved)


def apply_run_merge(config: dict[str, Any], layers: Sequence[Layer], schema: dict[str, Any]) -> list[RunChanges]:
    """Put the runs of ``layers`` merged by name (:func:`merge_runs`) into ``config``, Snakemake's merge of them.

    ``config.training.replace_runs`` (a per-file instruction, read from each layer) is removed.
    Returns what each layer with runs did: the first (the base config) defined them, the others
    are the overlays the log describes; :func:`run_origins` reads them all.
    """
    runs, changes = merge_runs(layers, schema)
    if not isinstance(config.get("training"), dict):
        return changes  # an empty `training:` in a file: the schema check names it
    if runs is not None:
        config["training"]["runs"] = runs
        config["training"].pop(REPLACE_RUNS, None)
    return changes


def run_origins(changes: Sequence[RunChanges]) -> dict[str, list[str]]:
    """The files (``RunChanges.source``) whose entries set keys of each merged run, in merge order."""
    origins: dict[str, list[str]] = {}
    for change in changes:
        if change.replaced is not None:
            origins = {}
        for name in change.listed:
            origins.setdefault(name, []).append(change.source)
        origins = {name: origins[name] for name in change.result if name in origins}
    return origins


_RUN_INDEX = re.compile(r"^config\.training\.runs\[(\d+)\]")


def locate_run_problems(problems: Sequence[str], config: Mapping[str, Any], changes: Sequence[RunChanges]) -> list[str]:
    """Each problem about ``config.training.runs[i]`` (an index into the merged list of ``config``)
    with that run's name and the files that set it (:func:`run_origins` of the merge's ``changes``):
    ``config.training.runs[1] (r64_all: config.yaml, my.yaml).lerning_rate``."""
    training = config.get("training")
    runs = training.get("runs") if isinstance(training, Mapping) else None
    if not isinstance(runs, list):
        return list(problems)
    origins = run_origins(changes)
    located = []
    for problem in problems:
        match = _RUN_INDEX.match(problem)
        index = int(match[1]) if match else -1
        if 0 <= index < len(runs) and isinstance(runs[index], Mapping):
            name = runs[index].get("name")
            files = ", ".join(origins.get(name, [])) if isinstance(name, str) else ""
            label = f"{name}: {files}" if files else str(name)
            problem = f"{match[0]} ({label}){problem[match.end() :]}"
        located.append(problem)
    return located
