"""Coverage of the participant confidence intervals on a simulated population.

Prints, for 10 and 30 participants, the share of simulated studies whose 95 % interval
holds the population value: the participant jackknife t-interval the benchmark tables use
(`mmhe.evaluation.intervals.jackknife_interval`) beside the participant percentile
bootstrap (`mmhe.evaluation.metrics.bootstrap_ci`). The population and the truth are
described in `mmhe.evaluation.intervals`. Monte Carlo SE at 95 %: 0.2 points with
10,000 studies.

    python benchmarks/ci_coverage.py [n_studies]
"""

from __future__ import annotations

import sys
import time

from mmhe.evaluation.intervals import population_truth, simulate_coverage


def main(n_studies: int = 10_000) -> None:
    started = time.perf_counter()
    print(f"95 % intervals, {n_studies} simulated studies each")
    print("metric    participants  jackknife-t  percentile-bootstrap")
    for metric in ("uf1", "uar", "accuracy"):
        truth = population_truth(metric)
        for n in (10, 30):
            jack = simulate_coverage(n, metric=metric, n_studies=n_studies, truth=truth)
            boot = simulate_coverage(
                n, metric=metric, method="percentile", n_studies=n_studies // 5, truth=truth
            )
            print(f"{metric:<9} {n:>12}  {jack:>11.3f}  {boot:>20.3f}")
    print(f"({time.perf_counter() - started:.0f} s; bootstrap on a fifth of the studies)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
