"""Scale-out figures: simulation and Baidu conversion on the local engine and on Ray (1 and 2 workers), the
overhead of a Ray task, and training steps per second on 1 and 2 forced host devices.

Run by hand: ``python benchmarks/scale_out.py [--sessions N] [--rows-per-file R] [--partitions P]``.
Needs the ray extra (``pip install -e '.[ray]'``); without it the Ray rows are skipped. Every figure is measured
in this run, the local engine beside Ray on the same machine. The per-core throughput printed last feeds the
projections in docs/scale.md.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"


def digests(directory: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.parquet"))}


def simulate(simulator, out, sessions, rows_per_file, engine=None):
    started = time.perf_counter()
    simulator.run(out, sessions, rows_per_file=rows_per_file, progress=False, engine=engine)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic")
    parser.add_argument("--sessions", type=int, default=4_000_000)
    parser.add_argument("--rows-per-file", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4, help="synthetic Baidu partitions to convert")
    parser.add_argument("--sessions-per-partition", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=300, help="training steps timed per device count")
    args = parser.parse_args()
    try:
        import ray  # noqa: F401

        from click_models.engine import RayEngine
    except ImportError:
        RayEngine = None
        print("ray is not installed (pip install -e '.[ray]'): the Ray rows are skipped")
    work = Path(tempfile.mkdtemp(prefix="ultr-scale-"))
    figures = {"cores": os.cpu_count()}
    try:
        dataset = load_dataset(args.data)
        simulator = Simulator(dataset, SimulationConfig(click_model="pbm"), seed=0)
        parts = -(-args.sessions // args.rows_per_file)
        print(f"simulate: {args.data}, PBM, {args.sessions:,} sessions in {parts} parts, {os.cpu_count()} cores")
        local = simulate(simulator, work / "local", args.sessions, args.rows_per_file)
        figures["simulate_local"] = args.sessions / local
        print(f"  local engine (2 threads):  {local:6.2f}s  {args.sessions / local / 1e6:.2f}M sessions/s")
        if RayEngine is not None:
            for workers in (1, 2):
                with RayEngine(workers=workers) as engine:
                    seconds = simulate(simulator, work / f"ray{workers}", args.sessions, args.rows_per_file, engine)
                    # overhead per task: the same number of tasks, each of one session
                    tiny = simulate(simulator, work / f"tiny{workers}", parts, 1, engine)
                same = digests(work / f"ray{workers}") == digests(work / "local")
                figures[f"simulate_ray{workers}"] = args.sessions / seconds
                print(f"  ray, {workers} worker{'s' if workers > 1 else ' '}:            {seconds:6.2f}s  "
                      f"{args.sessions / seconds / 1e6:.2f}M sessions/s ({seconds / local:.2f}x the local time); "
                      f"overhead {tiny / parts * workers:.2f}s per task; bytes identical to local: {same}")
                figures[f"task_overhead_ray{workers}"] = tiny / parts * workers
        baidu(args, work, RayEngine, figures)
        devices(args, work, figures)
        print("figures: " + json.dumps({k: round(v, 3) for k, v in figures.items()}))
        project(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def project(figures):
    """Wall times on C cores: tasks run in waves of C, each task its part's sessions at the measured rate of one
    core plus the measured overhead of a task; start-up, stragglers and storage bandwidth are left out."""
    import math

    overhead = figures.get("task_overhead_ray1", 0.0)
    jobs = [("Baidu-ULTR conversion, 1.2B sessions in 2,000 partitions", 1_200_000_000, 600_000,
             figures["baidu_local_1process"]),
            ("simulation, 10^9 sessions in parts of 10^6", 1_000_000_000, 1_000_000,
             figures.get("simulate_ray1", figures["simulate_local"] / figures["cores"]))]
    print(f"projected wall times (per-core rates measured above, {overhead:.2f}s overhead per task):")
    for name, sessions, part, rate in jobs:
        parts = math.ceil(sessions / part)
        cells = []
        for cores in (64, 256, 1024):
            seconds = math.ceil(parts / cores) * (part / rate + overhead)
            cells.append(f"{cores} cores {seconds / 60:.1f} min" if seconds >= 120 else f"{cores} cores {seconds:.0f} s")
        print(f"  {name} at {rate:,.0f} sessions/s per core ({sessions / rate / 3600:.1f} core-hours): "
              + ", ".join(cells))


def baidu(args, work, RayEngine, figures):
    from simulators.baidu_convert import convert
    from simulators.baidu_synthetic import write_partitions

    raw = work / "baidu-raw"
    write_partitions(raw, num_partitions=args.partitions, sessions_per_partition=args.sessions_per_partition, seed=0)
    total = args.partitions * args.sessions_per_partition
    print(f"baidu convert: {args.partitions} synthetic partitions, {total:,} sessions")
    runs = [("local, 1 process", {"workers": 1}), ("local, 2 processes", {"workers": 2})]
    if RayEngine is not None:
        runs += [(f"ray, {w} worker{'s' if w > 1 else ''}", {"engine": w}) for w in (1, 2)]
    first = None
    for label, options in runs:
        out = work / f"baidu-{label.replace(' ', '').replace(',', '-')}"
        started = time.perf_counter()
        if "engine" in options:
            with RayEngine(workers=options["engine"]) as engine:
                convert(raw, out, engine=engine)
        else:
            convert(raw, out, workers=options["workers"])
        seconds = time.perf_counter() - started
        first = first or digests(out / "logs")
        key = "baidu_" + label.replace(", ", "_").replace(" ", "")
        figures[key] = total / seconds
        print(f"  {label:<20} {seconds:6.2f}s  {total / seconds:,.0f} sessions/s; logs identical to the first: "
              f"{digests(out / 'logs') == first}")


DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import jax, numpy as np
    from ultr.data import ClickBatch
    from ultr.training import TrainConfig, data_parallel_mesh, make_learner, make_optimizer, train_learner

    steps, features, K, B = int(sys.argv[1]), 136, 10, 256
    rng = np.random.default_rng(0)
    table = jax.numpy.asarray(rng.normal(size=(50_000, features)), jax.numpy.float32)
    batch = ClickBatch(rows=rng.integers(0, 50_000, (B, K)), clicks=rng.uniform(size=(B, K)) < 0.2,
                       mask=np.ones((B, K), bool), propensity=np.ones((B, K), np.float32))
    out = {}
    for devices in (1, 2):
        config = TrainConfig(learner="ips", ranker="mlp", hidden=(512, 256, 128), batch_size=B, devices=devices,
                             propensities="oracle")
        learner = make_learner(config, features, K)
        mesh = data_parallel_mesh(devices)
        rates = []
        for count in (10, 10 + steps):  # the difference removes compilation
            started = time.perf_counter()
            train_learner(learner, make_optimizer(config), lambda epoch: [batch] * count, table, max_steps=count,
                          mesh=mesh)
            jax.block_until_ready(jax.tree.leaves(learner))
            rates.append(time.perf_counter() - started)
        out[devices] = steps / (rates[1] - rates[0])
    print(json.dumps(out))
""")


def devices(args, work, figures):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT, str(args.steps)], env=env, capture_output=True,
                          text=True)
    if done.returncode:
        print("training on forced host devices failed:", done.stderr[-1000:])
        return
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    print("training steps (IPS, MLP 512-256-128 over 136 features, 256 sessions of 10 a step; the forced host "
          "devices share this machine's cores):")
    for count, rate in rates.items():
        figures[f"train_steps_{count}dev"] = rate
        print(f"  {count} device{'s' if count != '1' else ' '}: {rate:7.1f} steps/s")


if __name__ == "__main__":
    main()
