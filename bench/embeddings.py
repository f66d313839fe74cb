"""Benchmark: the embedding model's load time, memory (RSS) and encode throughput, in a fresh process.

Run: .venv/bin/python bench/embeddings.py [--django] [--json]
--django sets Django up first, as the server and the worker do, so the RSS is that of such a process.
Numbers for the runtime that replaced sentence-transformers + PyTorch: docs/embeddings-runtime.md.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mib() -> float:
    """This process's resident set size now, in MiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_seconds(fn, repeat: int) -> float:
    """Median wall time of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--django", action="store_true", help="set Django up first, as the server does")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, float] = {"rss_start_mib": rss_mib()}
    if args.django:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
        os.environ.setdefault("DEBUG", "1")
        import django

        django.setup()
        import puomemo.urls  # noqa: F401  (what a serving process has imported)

        results["rss_django_mib"] = rss_mib()

    from memories import embeddings

    start = time.perf_counter()
    embeddings.model()
    results["load_seconds"] = time.perf_counter() - start
    results["rss_loaded_mib"] = rss_mib()

    short = [f"A note about topic {i}: the team met and decided things." for i in range(256)]
    long = [f"Report {i}. " + "The committee reviewed every proposal in detail. " * 40 for i in range(64)]
    embeddings.encode(short[:8])
    for name, texts, repeat in (("short", short, 3), ("long", long, 2)):
        for size in (32, len(texts)):
            calls = [texts[i : i + size] for i in range(0, len(texts), size)]
            seconds = median_seconds(lambda calls=calls: [embeddings.encode(call) for call in calls], repeat)
            results[f"{name}_texts_per_s_calls_of_{size}"] = len(texts) / seconds
    results["one_query_ms"] = median_seconds(lambda: embeddings.encode(["dogs"]), 20) * 1000
    results["rss_after_encoding_mib"] = rss_mib()
    results["peak_rss_mib"] = peak_rss_mib()
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in results.items()}))
    else:
        for key, value in results.items():
            print(f"{key:>40}: {value:,.2f}")


if __name__ == "__main__":
    main()
