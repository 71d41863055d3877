"""The `sipo-bench` command line. Usage errors exit 2 with one line; failed stages exit 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import SipoBenchError, UsageError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _labels(value: str) -> list[str]:
    from .variants import split_labels

    return split_labels(value)


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"sipo-bench: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sipo-bench", description="Benchmark multi-objective alignment methods.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="Train every method, sweep weights, score, report.")
    r.add_argument("--task", help="Task name (default: synthetic-hh, the embedded default task).")
    r.add_argument("--methods", type=_labels, help="Comma-separated method labels (names or variants "
                   "name@field=value,field=value), or 'all'.")
    r.add_argument("--compare-to", type=_labels, metavar="B[,B]", help="Baselines for paired comparisons "
                   "(every other method vs each), e.g. mod,dpo-soups.")
    r.add_argument("--seeds", type=_seeds, help="Comma-separated seeds, e.g. 0,1,2.")
    r.add_argument("--weights", type=int, metavar="P", help="Simplex partitions of the weight grid (k=2: P+1 points).")
    r.add_argument("--config", help="YAML file with RunConfig fields; flags override it.")
    r.add_argument("--out", help="Output directory (default results/<task>-<timestamp>).")
    r.add_argument("--executor", help="Executor (default local).")
    r.add_argument("--ray-address", help="Ray cluster address for --executor ray (auto or HOST:PORT).")
    r.add_argument("--plugins-dir", help="Directory of extra plugin *.py files.")
    r.add_argument("--cache-dir", help="Stage cache (default $SIPO_BENCH_CACHE or ~/.cache/sipo-bench).")
    r.add_argument("--no-cache", action="store_true", default=None, help="Recompute every stage.")
    r.add_argument("--max-test-prompts", type=int, help="Evaluate on at most N test prompts.")
    r.add_argument("--max-examples", type=int, help="Cap training pairs (task option max_examples).")
    r.add_argument("--quiet", action="store_true", default=None, help="Log lines only, no progress bars.")

    pl = sub.add_parser("plugins", help="List plugins, versions and what they register.")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--plugins-dir")

    ls = sub.add_parser("ls", help="List tasks, methods, scorers, objectives, generators or executors.")
    ls.add_argument("kind", choices=["tasks", "methods", "scorers", "objectives", "generators", "executors"])
    ls.add_argument("--plugins-dir")

    v = sub.add_parser("validate", help="Check a config (names, types, weights) without running.")
    v.add_argument("--config", required=True)
    v.add_argument("--plugins-dir")

    rep = sub.add_parser("report", help="Re-render reports from summary.json; several dirs are merged.")
    rep.add_argument("dirs", nargs="+")
    rep.add_argument("--out", help="Where to write a merged report (default: the single DIR).")

    c = sub.add_parser("conflicts", help="Conflict fraction and label agreement of a task's training pairs.")
    c.add_argument("--task", default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--config", help="YAML with task / task_options.")
    c.add_argument("--cache-dir")
    c.add_argument("--plugins-dir")
    return p


def _version() -> str:
    from . import __version__

    return f"sipo-bench {__version__}"


def _run_config(args: argparse.Namespace) -> Any:
    from .experiment import load_yaml, make_config

    data = load_yaml(args.config) if getattr(args, "config", None) else {}
    overrides = {
        "task": args.task, "methods": args.methods, "seeds": args.seeds, "weights": args.weights,
        "out": args.out, "executor": args.executor, "plugins_dir": args.plugins_dir,
        "cache_dir": args.cache_dir, "no_cache": args.no_cache, "quiet": args.quiet,
        "max_test_prompts": args.max_test_prompts, "compare_to": args.compare_to,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.max_examples is not None:
        data["task_options"] = {**data.get("task_options", {}), "max_examples": args.max_examples}
    if args.ray_address is not None:
        data["executor_options"] = {**data.get("executor_options", {}), "address": args.ray_address}
    return make_config(data)


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import execute
    from .report import console_table
    from .runtime import Runtime

    cfg = _run_config(args)
    runtime = Runtime(plugins_dir=cfg.plugins_dir, quiet=cfg.quiet)
    summary, out = execute(cfg, runtime)
    if summary.get("kind") == "sweep":
        return _show_sweep(out, cfg.quiet)
    failed = {n: m["error"] for n, m in summary["methods"].items() if m["status"] != "ok"}
    if cfg.quiet:
        from .report import table_md

        print(table_md(summary))
    else:
        from rich.console import Console

        Console().print(console_table(summary))
    print(f"results: {out}/summary.json", file=sys.stderr)
    if failed:
        for n, e in failed.items():
            print(f"sipo-bench: method {n!r} failed: {e} (tracebacks in {out}/logs/failures/)", file=sys.stderr)
        return 1
    return 0


def _show_sweep(out: Path, quiet: bool) -> int:
    """Print a sweep's multi-run tables; exit 1 when a method failed at any point."""
    from .sweep import failures, load_sweep, sweep_console, sweep_md

    index, summaries = load_sweep(out)
    if quiet:
        print(sweep_md(index, summaries))
    else:
        from rich.console import Console

        Console().print(sweep_console(index, summaries))
    print(f"results: {out}/sweep.json (one run per point: {out}/<point>/summary.json)", file=sys.stderr)
    failed = failures(index, summaries)
    for label, n, e in failed:
        print(f"sipo-bench: sweep point {label}: method {n!r} failed: {e} (tracebacks in {out}/logs/failures/)",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import load

    regs = load(args.plugins_dir)
    infos = regs.plugin_list()
    if args.json:
        print(json.dumps([{"name": i.name, "version": i.version, "source": i.source, "registers": i.registers}
                          for i in infos], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="sipo-bench plugins")
    for c in ("plugin", "version", "source", "registers"):
        t.add_column(c)
    for i in infos:
        t.add_row(i.name, i.version, i.source, "; ".join(f"{k}: {', '.join(v)}" for k, v in i.registers.items()))
    Console().print(t)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from .plugins import load

    reg = getattr(load(args.plugins_dir), args.kind)
    for e in reg.entries():
        desc = e.description or (getattr(e.value, "description", "") if not hasattr(e.value, "target") else "")
        print(f"{e.name:24s} {e.plugin:16s} {desc}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .experiment import load_yaml, make_config, plan_run
    from .runtime import Runtime

    data = load_yaml(args.config)
    if args.plugins_dir:
        data["plugins_dir"] = args.plugins_dir
    cfg = make_config(data)
    from .stages import walk
    from .sweep import plan_sweep

    runtime = Runtime(plugins_dir=cfg.plugins_dir, quiet=True)
    points = plan_sweep(cfg, runtime, plan_run)
    plans = [p.plan for p in points] or [plan_run(cfg, runtime)]
    bad = [(f"sweep point {p.label}: " if points else "", n, m.error)
           for p, plan in zip(points or [None], plans) for n, m in plan.methods.items() if m.error]
    if bad:
        for where, n, e in bad:
            print(f"sipo-bench: {where}method {n!r}: {e}", file=sys.stderr)
        return 2
    plan = plans[0]
    n = len(walk([s for p in plans for s in p.stages()]))
    sweep = f", {len(points)} sweep points" if points else ""
    print(f"ok: task {plan.task.name}, methods {', '.join(plan.methods)}, {len(plan.grid)} weights, "
          f"{len(cfg.seeds)} seed(s){sweep}, {n} stages")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import load_summaries, merge, render_files, console_table

    from .sweep import is_sweep_dir, render_sweep

    sweeps = [d for d in args.dirs if is_sweep_dir(Path(d))]
    if sweeps:
        if len(args.dirs) > 1 or args.out:
            raise UsageError(f"`{sweeps[0]}`: a sweep directory is re-rendered on its own (one DIR, no --out), "
                             f"got {len(args.dirs)} DIR(s){' and --out' if args.out else ''}")
        from .sweep import load_sweep

        index, _ = load_sweep(Path(sweeps[0]))
        for p in index["points"]:
            render_files(load_summaries([Path(sweeps[0]) / p["dir"]])[0], Path(sweeps[0]) / p["dir"])
        render_sweep(Path(sweeps[0]))
        _show_sweep(Path(sweeps[0]), quiet=False)  # re-rendering succeeded even if a method had failed
        return 0
    if len(args.dirs) > 1 and not args.out:
        raise UsageError("`--out`: expected a directory for the merged report when several DIRs are given, got nothing")
    summaries = load_summaries([Path(d) for d in args.dirs])
    summary = merge(summaries) if len(summaries) > 1 else summaries[0]
    out = Path(args.out) if args.out else Path(args.dirs[0])
    if args.out:
        from .experiment import check_out_dir
        from .stages import write_json

        check_out_dir(out)
        write_json(out / "summary.json", summary)
    render_files(summary, out)
    from rich.console import Console

    Console().print(console_table(summary))
    return 0


def cmd_conflicts(args: argparse.Namespace) -> int:
    from .conflicts import conflict_report

    return conflict_report(args)


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "ls": cmd_ls, "validate": cmd_validate,
            "report": cmd_report, "conflicts": cmd_conflicts}


def _quiet_libraries() -> None:
    """Stage progress is ours (one rich display); silence the libraries' own tqdm bars."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SipoBenchError as e:
        print(f"sipo-bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sipo-bench: interrupted; finished stages are cached, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
