"""Several training runs at once: seeds x config overrides, each in its own folder, on an executor.

``kis train --config C --seeds 0,1,2 --set env.slo_weight=0.1,0.2`` makes the
grid of every seed with every combination of the ``--set`` values (here six
runs), checks each resulting config before anything starts, and trains them
through :mod:`simulator.executor` (a local process pool by default, or Ray).
Each run writes what a single ``kis train`` writes (logs, evaluations, model,
artifact) into ``OUT/<run name>/``; a run is a pure function of its config, so
the same config and seed give the same policy wherever it ran.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulator.training.config import TrainConfig, validation_problems


@dataclass(frozen=True)
class RunSpec:
    """One training run: its name, its full config (as validated data) and its output folder."""

    name: str
    config: dict[str, Any]
    out_dir: str
    overrides: tuple[tuple[str, Any], ...] = ()


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets: ``0.1,0.2`` -> two values; ``[ramp,spike],[llm-day]`` -> two lists."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_set(option: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` (``KEY`` a dotted config path) -> ``(KEY, [V1, V2, ...])``."""
    key, sep, values = option.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ValueError(f"--set {option!r}: expected KEY=VALUE[,VALUE...], e.g. env.slo_weight=0.1,0.2")
    try:
        return key, [_value(v) for v in _split_values(values)]
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {option!r}: cannot read a value: {exc}") from exc


def _assign(config: dict[str, Any], key: str, value: Any) -> None:
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ValueError(f"--set {key}: {part!r} is not a section of the training config")
        node = child
    node[leaf] = value


def _name(seed: int, overrides: Sequence[tuple[str, Any]]) -> str:
    parts = [f"seed{seed}"] + [f"{key}={json.dumps(value, separators=(',', ':')).strip(chr(34))}" for key, value in overrides]
    return "-".join(p.replace("/", "_").replace(" ", "") for p in parts)


def plan_runs(base: TrainConfig, seeds: Sequence[int], sets: Sequence[tuple[str, list[Any]]], out_dir: Path) -> list[RunSpec]:
    """Every seed with every combination of the ``sets`` values, each config validated (errors name the option)."""
    if not seeds:
        raise ValueError("--seeds: need at least one seed")
    keys = [key for key, _ in sets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"--set: a key appears twice: {keys}")
    specs = []
    for combo in itertools.product(*(values for _, values in sets)):
        overrides = tuple(zip(keys, combo))
        for seed in seeds:
            raw = base.model_dump(mode="json")
            for key, value in overrides:
                _assign(raw, key, value)
            raw["seed"] = int(seed)
            try:
                config = TrainConfig.model_validate(raw)
            except ValidationError as exc:
                where = ", ".join(f"{k}={v}" for k, v in overrides) or f"seed {seed}"
                raise ValueError(f"--set {where}: invalid training config: {validation_problems(exc)}") from exc
            name = _name(int(seed), overrides)
            specs.append(RunSpec(name, config.model_dump(mode="json"), str(out_dir / name), overrides))
    return specs


def train_run(shared: Any, spec: RunSpec) -> dict[str, Any]:
    """Train one run (the executor's cell function): a small summary, and the run folder's files.

    The run trains in a temporary folder where it runs (a pool worker, a Ray
    node) and returns every file it wrote under ``"files"``; :func:`train_many`
    writes them into ``spec.out_dir`` on the calling machine.
    """
    config = TrainConfig.model_validate(spec.config)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kis-train-") as tmp:
        work = Path(tmp)
        if config.algo == "qlearning":
            summary = train_qlearning_run(config, work)
            summary["qtable"] = str(Path(spec.out_dir) / "qtable.npz")
        elif config.algo == "rollout":  # its episodes run one after another inside this run's worker
            from simulator.training.rollout import train_rollout

            summary = {k: v for k, v in train_rollout(config, work).items() if k in ("samples", "labels")}
            summary.update(last_reward=None, best_reward=None, artifact=str(Path(spec.out_dir) / "artifact"))
        else:
            from simulator.training.sb3 import summary_json, train_sb3

            train_sb3(config, work, progress=False)
            evaluations = summary_json(work)["evaluations"]
            summary = {
                "last_reward": evaluations[-1]["mean_reward"] if evaluations else None,
                "best_reward": max(e["mean_reward"] for e in evaluations) if evaluations else None,
                "artifact": str(Path(spec.out_dir) / "artifact"),
            }
        files = {str(f.relative_to(work)): f.read_bytes() for f in sorted(work.rglob("*")) if f.is_file()}
    return {"run": spec.name, "seed": config.seed, "overrides": dict(spec.overrides), "out_dir": spec.out_dir, "algo": config.algo,
            "total_steps": config.total_steps, "seconds": round(time.perf_counter() - started, 1), **summary, "files": files}


def write_run(summary: dict[str, Any]) -> dict[str, Any]:
    """Write a finished run's files into its ``out_dir``; the summary without them."""
    out = Path(summary["out_dir"])
    for name, data in summary["files"].items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {k: v for k, v in summary.items() if k != "files"}


def train_qlearning_run(config: TrainConfig, out: Path, on_episode=None) -> dict[str, Any]:
    """Tabular Q-learning on the config's environment: ``qtable.npz`` and ``episodes.csv`` in ``out``."""
    from simulator.training.envs import make_env
    from simulator.training.qlearning import QConfig, train_qlearning, write_episode_log

    env = make_env(config)
    steps_per_episode = int(config.env.episode_duration_s // config.env.interval_s)
    episodes = max(1, config.total_steps // steps_per_episode)
    params = {k: v for k, v in config.hyperparameters.items() if k in ("alpha", "gamma", "epsilon_start", "epsilon_end")}
    table, logs = train_qlearning(env, QConfig(episodes=episodes, seed=config.seed, **params), on_episode=on_episode)
    out.mkdir(parents=True, exist_ok=True)
    table.save(out / "qtable.npz")
    write_episode_log(logs, out / "episodes.csv")
    return {"episodes": episodes, "last_reward": logs[-1].reward, "last_slo_misses": logs[-1].slo_misses, "qtable": str(out / "qtable.npz")}


def train_many(specs: Sequence[RunSpec], executor, on_done=None):
    """Train every run on ``executor``, each into its ``out_dir`` here as it finishes; one
    :class:`~simulator.executor.Outcome` per run, in order (values: the summaries)."""
    from dataclasses import replace

    def finished(outcome) -> None:
        if outcome.ok:
            write_run(outcome.value)
        if on_done:
            on_done(outcome)

    outcomes = executor.map(train_run, None, list(specs), labels=[s.name for s in specs], on_done=finished)
    return [replace(o, value={k: v for k, v in o.value.items() if k != "files"}) if o.ok else o for o in outcomes]
