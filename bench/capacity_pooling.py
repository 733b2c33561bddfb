"""How much more a fleet serves per replica than one replica alone, and how well the profile's power law fits.

For a few token mixes on the shipped H100 x llama-8b latency model, the
largest request rate per replica at which 99% of requests meet the SLO is
measured for fleets of 1, 2, 4 and 8 replicas behind the least-connections
router (:func:`simulator.planning.capacity.max_rate`), and compared with the
capacity profile's interpolation ``gain(n) = gain(4) ** (log n / log 4)``.

    .venv/bin/python bench/capacity_pooling.py [--out bench/results/capacity_pooling.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from pathlib import Path

from controller.slo import SLO
from simulator.cluster.build import resolve_pools
from simulator.cluster.config import ClusterConfig
from simulator.planning.capacity import max_rate

MIXES = ((512, 128), (1155, 211), (2048, 28), (4096, 256))
FLEETS = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "capacity_pooling.md")
    args = parser.parse_args()
    pool = resolve_pools(ClusterConfig())[0]
    started = time.perf_counter()
    lines = ["# Fleet pooling: capacity per replica against fleet size", "",
             "Command: `.venv/bin/python bench/capacity_pooling.py`  ",
             f"Date: {dt.date.today().isoformat()}; H100 x llama-8b (kernel timing), least-connections router, SLO TTFT 500 ms / "
             "TPOT 50 ms, 99% of requests; 1,500 requests per replica per trial.", "",
             "| prompt / output | " + " | ".join(f"{n} replica{'s' if n > 1 else ''}" for n in FLEETS) + " | power law at 2 | at 8 |",
             "|---|" + "---:|" * (len(FLEETS) + 2)]
    for prompt, output in MIXES:
        rates = [max_rate(pool.model, pool.engine, SLO(), prompt, output, replicas=n, requests=1500)[0].rate for n in FLEETS]
        gains = [r / rates[0] for r in rates]
        law = {n: gains[FLEETS.index(4)] ** (math.log(n) / math.log(4)) for n in (2, 8)}
        cells = [f"{r:.3g} req/s ({g:.2f}x)" for r, g in zip(rates, gains)]
        errors = [f"{law[n]:.2f}x ({100 * (law[n] / gains[FLEETS.index(n)] - 1):+.0f}%)" for n in (2, 8)]
        lines.append(f"| {prompt} / {output} | " + " | ".join(cells + errors) + " |")
        print(lines[-1], flush=True)
    lines += ["", f"Wall time: {time.perf_counter() - started:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
