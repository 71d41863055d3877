"""How much is one seed's number worth? The default benchmark's seed 0 under three kernel
settings, beside the spread across seeds (issue 23, docs/reproducibility.md).

Runs `sipo-bench run --seeds 0` cold, each in its own cache, under

- `native`: this machine's own kernels (no ATEN_CPU_CAPABILITY / MKL_CBWR set),
- `avx2`: `ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2` (what a CPU without AVX-512 computes),
- `compatible`: `ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE` (no vector ISA at all),

then prints, per method, seed 0's HV (vs the base policy) under each setting, their spread
(max − min and sd), and the sd of HV across the 10 seeds of `results/synthetic-main` (the
same stages as seed 0 of this run, other seeds). Kernel settings change only the last bits of
the arithmetic; every difference in the table is those bits, amplified.

    nice -n 10 python benchmarks/kernel_noise.py --work /tmp/kernel-noise --jobs 2

`--analyse-only` re-reads the runs in `--work` without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
    "compatible": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
}
KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ROOT = Path(__file__).resolve().parent.parent


def run_setting(name: str, work: Path, jobs: int) -> dict:
    out, cache = work / name / "out", work / name / "cache"
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
    env.update(SETTINGS[name])
    cmd = [sys.executable, "-m", "sipo_bench.cli", "run", "--seeds", "0", "--out", str(out), "--cache-dir", str(cache),
           "--jobs", str(jobs), "--quiet", "--overwrite"]
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    (work / name).mkdir(parents=True, exist_ok=True)
    (work / name / "stderr.txt").write_text(r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"kernel_noise: the {name} run failed (exit {r.returncode}); see {work / name / 'stderr.txt'}")
    return {"wall_seconds": round(wall, 1), "load_after": os.getloadavg()}


def hv_of(summary: dict, seed: str = "0") -> dict[str, float]:
    return {m: e["hypervolume"]["per_seed"][seed] for m, e in summary["methods"].items()
            if e.get("hypervolume") and seed in e["hypervolume"].get("per_seed", {})}


def analyse(work: Path, main_summary: Path) -> dict:
    runs = {n: json.loads((work / n / "out" / "summary.json").read_text()) for n in SETTINGS
            if (work / n / "out" / "summary.json").is_file()}
    seeds = json.loads(main_summary.read_text())
    per_kernel = {n: hv_of(s) for n, s in runs.items()}
    methods = sorted({m for hv in per_kernel.values() for m in hv})
    rows = []
    for m in methods:
        vals = [per_kernel[n][m] for n in runs if m in per_kernel[n]]
        across_seeds = list(seeds["methods"][m]["hypervolume"]["per_seed"].values()) if m in seeds["methods"] else []
        rows.append({
            "method": m, "seed0": {n: per_kernel[n].get(m) for n in runs},
            "kernel_range": max(vals) - min(vals) if vals else None,
            "kernel_sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "seed_sd": statistics.stdev(across_seeds) if len(across_seeds) > 1 else None,
            "seed_mean": statistics.mean(across_seeds) if across_seeds else None,
            "committed_seed0": (seeds["methods"].get(m, {}).get("hypervolume") or {}).get("per_seed", {}).get("0"),
        })
    refs = {n: s["ref_points"]["0"] for n, s in runs.items()}
    provenance = {n: {k: (s.get("provenance") or {}).get(k) for k in ("torch_cpu_capability", "cpu")}
                  | {"mkl_cbwr": ((s.get("provenance") or {}).get("blas") or {}).get("mkl_cbwr")} for n, s in runs.items()}
    return {"settings": {n: SETTINGS[n] for n in runs}, "rows": rows, "ref_points": refs, "provenance": provenance,
            "committed_ref_point_seed0": seeds["ref_points"].get("0")}


def _record(cache: Path, key: str) -> dict | None:
    done = cache / "stages" / key / "_DONE.json"
    if not done.is_file():
        return None
    files = json.loads(done.read_text()).get("files") or {}
    return {f: e["sha256"] for f, e in files.items() if f != "result.json"}


def _generations(cache: Path, key: str) -> list[str] | None:
    f = cache / "stages" / key / "generations.jsonl"
    if not f.is_file():
        return None
    return [json.loads(x)["response"] for x in f.read_text().splitlines() if x.strip()]


def divergence(work: Path, names: list[str]) -> list[dict]:
    """Where the runs first part: per stage kind (in run order), how many of its stages wrote
    byte-identical files under every kernel setting, and for generate stages the share of
    responses that differ from the native run's. The stage keys are the same in every run (the
    kernels are not in the key), each run has its own cache."""
    events = [json.loads(x) for x in (work / names[0] / "out" / "logs" / "stages.jsonl").read_text().splitlines()]
    order: dict[str, str] = {}
    for e in events:
        if e["event"] in ("done", "cached"):
            order.setdefault(e["key"], e["stage"])
    kinds: dict[str, dict] = {}
    for key, stage in order.items():
        kind = stage.split("[")[0] + ("[base]" if stage.startswith(("generate[base", "score[base")) else "")
        k = kinds.setdefault(kind, {"kind": kind, "stages": 0, "identical": 0, "responses": 0, "responses_differ": 0})
        recs = [_record(work / n / "cache", key) for n in names]
        k["stages"] += 1
        k["identical"] += int(all(r is not None and r == recs[0] for r in recs))
        if stage.startswith("generate["):
            gens = [_generations(work / n / "cache", key) for n in names]
            if all(g is not None for g in gens):
                k["responses"] += len(gens[0]) * (len(gens) - 1)
                k["responses_differ"] += sum(a != b for g in gens[1:] for a, b in zip(gens[0], g))
    return list(kinds.values())


def show(res: dict) -> None:
    names = list(res["settings"])
    f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    print("seed-0 HV vs the base policy under each kernel setting, and the spread across seeds (10 seeds, "
          "results/synthetic-main)")
    print("| method | " + " | ".join(names) + " | committed seed 0 | range over kernels | sd over kernels | "
          "sd over seeds | kernel sd / seed sd |")
    print("|---|" + "--:|" * (len(names) + 5))
    for r in res["rows"]:
        ratio = r["kernel_sd"] / r["seed_sd"] if r["kernel_sd"] is not None and r["seed_sd"] else None
        print(f"| {r['method']} | " + " | ".join(f(r["seed0"].get(n)) for n in names)
              + f" | {f(r['committed_seed0'])} | {f(r['kernel_range'])} | {f(r['kernel_sd'])} | {f(r['seed_sd'])} | "
              + ("-" if ratio is None else f"{ratio:.2f}") + " |")
    print("base policy (reference point) of seed 0: " + "; ".join(
        f"{n} ({', '.join(f'{x:.4f}' for x in v)})" for n, v in res["ref_points"].items())
        + f"; committed ({', '.join(f'{x:.4f}' for x in res['committed_ref_point_seed0'])})")
    if res.get("divergence"):
        print("\nwhere the runs part (stage kinds in run order): stages whose files are byte-identical under every "
              "setting; generated responses that differ from the native run's")
        print("| stage kind | identical / stages | responses differing |")
        print("|---|--:|--:|")
        for d in res["divergence"]:
            resp = f"{d['responses_differ']} / {d['responses']}" if d["responses"] else "-"
            print(f"| {d['kind']} | {d['identical']} / {d['stages']} | {resp} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="directory for the three runs (outputs and caches)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ",".join(SETTINGS))
    ap.add_argument("--main-summary", default=str(ROOT / "results" / "synthetic-main" / "summary.json"))
    ap.add_argument("--analyse-only", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    timing = json.loads((work / "timing.json").read_text()) if (work / "timing.json").is_file() else {}
    if not args.analyse_only:
        for name in args.settings.split(","):
            if name not in SETTINGS:
                raise SystemExit(f"kernel_noise: `--settings`: expected names from {', '.join(SETTINGS)}, got {name!r}")
            timing[name] = run_setting(name, work, args.jobs)
            print(f"{name}: {timing[name]['wall_seconds']} s, load average after {timing[name]['load_after']}",
                  file=sys.stderr, flush=True)
            (work / "timing.json").write_text(json.dumps(timing, indent=1))
    res = analyse(work, Path(args.main_summary))
    res["divergence"] = divergence(work, list(res["settings"]))
    res["timing"] = timing
    (work / "kernel_noise.json").write_text(json.dumps(res, indent=1))
    show(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
