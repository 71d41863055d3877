"""Reports render from summary.json only: table.md reproduced byte for byte by `sipo-bench report`,
one-seed runs claim no interval, merge rules, plots that are not blank, extra stage results."""

from __future__ import annotations

import copy
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sipo_bench.scoring import pareto
from sipo_bench.reporting import outdir, report
from sipo_bench.reporting import merge
from sipo_bench.reporting import figures, text
from sipo_bench.cli import main
from sipo_bench.errors import UsageError
from sipo_bench.scoring.stats import hv_stats as _hv_stats, union_front_igd_plus as _igd_plus_all

# Dummy task: endpoint strength 0.9 -> mean scores (0.1,0.9) (0.3,0.7) (0.5,0.5) (0.7,0.3) (0.9,0.1)
# on the line a + b = 1, the base policy at (0.5, 0.5) and the task floor at (0, 0).
# HV vs floor, staircase: 0.1*0.9 + 0.2*0.7 + 0.2*0.5 + 0.2*0.3 + 0.2*0.1 = 0.41.
# HV vs base: no point is strictly better than (0.5, 0.5) on both -> 0.
DUMMY_HV_FLOOR = 0.41
STRONG_HV_FLOOR = 0.37  # strength 1.0, see test_merge_unites_methods_and_recomputes_indicators


def run_dummy(tmp_path: Path, name: str, cache: Path, *extra: str, seeds: str = "0,1,2") -> Path:
    out = tmp_path / name
    rc = main(["run", "--task", "dummy", "--methods", "dummy", "--seeds", seeds, "--out", str(out),
               "--cache-dir", str(cache), "--quiet", *extra])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two dummy runs sharing a cache: seeds 0,1,2 and a single seed 0."""
    base = tmp_path_factory.mktemp("report-runs")
    cache = base / "cache"
    return {"three": run_dummy(base, "three", cache), "one": run_dummy(base, "one", cache, seeds="0"), "cache": cache,
            "base": base}


def png_pixels(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(str(path))


def assert_not_blank(img: np.ndarray) -> None:
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # a white page has 0
    assert (rgb.min(axis=-1) < 0.5).mean() > 0.005  # some dark ink (text, markers, lines)


def method_entry(points: list[tuple[list[float], int, list[float]]], maximize, refs, floor=None, status="ok", error=None,
                 extra=None, seconds=1.5) -> dict:
    """A summary method entry shaped like `experiment.summarize` makes it."""
    pts = [{"w": list(w), "seed": seed, "scores": list(sc)} for w, seed, sc in points]
    by_w: dict[tuple, list] = {}
    for p in pts:
        by_w.setdefault(tuple(p["w"]), []).append(p["scores"])
    mean_points = [{"w": list(w), "scores": np.mean(v, axis=0).tolist(), "n_seeds": len(v)} for w, v in by_w.items()]
    seeds = sorted({p["seed"] for p in pts})
    entry = {"status": status, "error": error, "config": {}, "points": pts, "front": [], "hypervolume": None,
             "hypervolume_floor": None, "igd_plus": None, "mean_points": mean_points}
    if status == "ok" and mean_points:
        entry["front"] = [mean_points[i] for i in pareto.pareto_front([m["scores"] for m in mean_points], maximize)]
        entry["hypervolume"] = _hv_stats(pts, refs, maximize, seeds)
        if floor is not None:
            entry["hypervolume_floor"] = _hv_stats(pts, {s: floor for s in seeds}, maximize, seeds)
    entry["best"] = {}
    entry["stage_seconds"] = {"train": seconds}
    entry["seconds"] = seconds
    entry["extra"] = extra or {}
    return entry


def synthetic_summary(objectives: list[tuple[str, bool]], methods: dict[str, dict], refs: dict[int, list[float]],
                      floor=None, seeds=(0, 1)) -> dict:
    maximize = [d for _, d in objectives]
    union = _igd_plus_all(methods, maximize)
    for m in methods.values():
        mp = m["mean_points"]
        m["best"] = {n: (max if d else min)(p["scores"][i] for p in mp) for i, (n, d) in enumerate(objectives)} if mp else {}
    return merge.normalize({
        "schema_version": 1, "task": "synthetic", "task_description": "A summary built in a test.",
        "objectives": [{"name": n, "higher_is_better": d, "description": ""} for n, d in objectives],
        "weights": [], "seeds": list(seeds),
        "ref_point": np.mean(list(refs.values()), axis=0).tolist(), "ref_point_source": "base policy mean test scores (per seed, cached stage)",
        "ref_points": {str(s): r for s, r in refs.items()}, "floor": floor, "floor_source": "task synthetic" if floor else None,
        "union_front": union, "base_policy": {"scores": {str(s): r for s, r in refs.items()}}, "task_data": {}, "task_base": {},
        "methods": methods, "generator": "dummy", "config": {}, "versions": {}, "git_commit": None,
        "run": {"run_id": "synthetic", "date": "2025-01-01T00:00:00+00:00", "wall_seconds": 1.0, "stages": {"total": 1}},
    })


W2 = [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)]


def k2_summary() -> dict:
    """helpful (max) vs harm (min); a soup with a dominated weight, dpo with its two vertices
    only, and a failed method with one point."""
    mx = [True, False]
    refs = {0: [0.0, 1.0], 1: [0.1, 1.1]}
    soup = [(w, s, [0.2 + 0.6 * w[0] + 0.02 * s, 0.2 + 0.5 * w[0] ** 2 + 0.02 * s]) for s in (0, 1) for w in W2]
    soup[2] = (soup[2][0], 0, [0.3, 0.9])  # w=(0.5,0.5), seed 0: a bad point -> dominated mean
    dpo = [(w, s, [0.15 + 0.6 * w[0], 0.25 + 0.6 * w[0]]) for s in (0, 1) for w in (W2[0], W2[-1])]
    extra = {"0": {"filter": {"kept": 12, "conflicting": 40, "rate": 0.3, "note": "text", "nested": {"x": 1}, "flag": True}},
             "1": {"filter": {"kept": 14, "conflicting": 40, "rate": 0.35}, "review": None}}
    methods = {"dpo-soups": method_entry(soup, mx, refs, extra=extra), "dpo": method_entry(dpo, mx, refs, seconds=0.25),
               "modpo": method_entry([(W2[1], 0, [0.6, 0.5])], mx, refs, status="failed",
                                     error="stage modpo[w=0.75|0.25]: RuntimeError: out of memory")}
    return synthetic_summary([("helpful", True), ("harm", False)], methods, refs)


def k3_summary() -> dict:
    from pymoo.util.ref_dirs import get_reference_directions

    grid = get_reference_directions("das-dennis", 3, n_partitions=3).tolist()
    mx = [True, True, True]
    refs = {0: [0.2, 0.2, 0.2], 1: [0.25, 0.2, 0.15]}
    a = [(w, s, [0.3 + 0.6 * w[0] + 0.01 * s, 0.3 + 0.6 * w[1], 0.3 + 0.6 * w[2] - 0.01 * s]) for s in (0, 1) for w in grid]
    b = [(w, s, [0.25 + 0.5 * w[0], 0.25 + 0.55 * w[1], 0.3 + 0.5 * w[2]]) for s in (0, 1) for w in grid]
    methods = {"mod": method_entry(a, mx, refs), "dpo-soups": method_entry(b, mx, refs)}
    return synthetic_summary([("helpful", True), ("honest", True), ("harmless", True)], methods, refs, floor=[0.0, 0.0, 0.0])


def md_row(table: str, method: str) -> list[str]:
    line = next(l for l in table.splitlines() if l.startswith(f"| {method} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


# --- A real run and `sipo-bench report` -------------------------------------------------------


def test_report_reproduces_table_md_byte_for_byte(runs, tmp_path, capsys):
    out = runs["three"]
    original = {n: (out / n).read_bytes() for n in ("table.md", "points.csv")}
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "summary.json").write_bytes((out / "summary.json").read_bytes())
    assert main(["report", str(copy_dir)]) == 0
    for n, data in original.items():
        assert (copy_dir / n).read_bytes() == data, n
    assert sorted(p.name for p in copy_dir.iterdir()) == ["front.png", "points.csv", "summary.json", "table.md"]
    assert main(["report", str(out)]) == 0  # in place, twice: still the same bytes
    assert (out / "table.md").read_bytes() == original["table.md"]
    console = capsys.readouterr().out
    assert "dummy" in console and "0.4100" in console and "base policy mean test scores" in console


def test_real_run_numbers_trace_to_summary(runs):
    out = runs["three"]
    s = json.loads((out / "summary.json").read_text())
    m = s["methods"]["dummy"]
    assert m["hypervolume_floor"]["mean"] == pytest.approx(DUMMY_HV_FLOOR, abs=1e-12)
    assert m["hypervolume_floor"]["per_seed"] == {k: pytest.approx(DUMMY_HV_FLOOR) for k in ("0", "1", "2")}
    assert m["hypervolume"]["mean"] == 0.0
    assert m["hypervolume"]["interval"] == {"method": "t", "level": 0.95, "coverage": 0.95, "lo": 0.0, "hi": 0.0, "n": 3, "df": 2}
    assert s["union_front"] == [f["scores"] for f in m["front"]] and m["igd_plus"] == 0.0
    table = (out / "table.md").read_text()
    row = md_row(table, "dummy")
    assert row == ["dummy", "ok", "0.0000 [0.0000, 0.0000]", "0.4100 [0.4100, 0.4100]", "0.0000", "0.0000 [0.0000, 0.0000]", "5", "0.9000", "0.9000"]
    assert "HV vs ref (0.5000, 0.5000) [t 95% CI]" in table and "HV vs floor (0.0000, 0.0000) [t 95% CI]" in table
    assert "bootstrap]" not in table and "bootstrap 95% CI]" not in table  # 3 seeds: never a bootstrap interval
    assert "HV reference point: a=0.5000, b=0.5000; source: base policy mean test scores" in table
    assert "HV floor: a=0.0000, b=0.0000; source: task dummy." in table
    csv_rows = (out / "points.csv").read_text().splitlines()
    assert csv_rows[0] == "method,seed,w_a,w_b,a,b,se_a,se_b,n_prompts"
    assert len(csv_rows) == 1 + 3 * 5
    assert "dummy,1,0.25,0.75,0.3,0.7,0.0,0.0,4" in csv_rows  # every dummy prompt gets the same response
    img = png_pixels(out / "front.png")
    assert img.shape[0] >= 400 and img.shape[1] >= 500
    assert_not_blank(img)


def test_one_seed_claims_no_interval(runs, capsys):
    out = runs["one"]
    s = json.loads((out / "summary.json").read_text())
    m = s["methods"]["dummy"]
    assert m["hypervolume"]["interval"] is None and m["hypervolume_floor"]["interval"] is None
    assert m["hypervolume_floor"]["std"] is None
    table = (out / "table.md").read_text()
    assert "[" not in table.split("| method |", 1)[1]  # no interval anywhere in the tables
    assert md_row(table, "dummy")[3] == "0.4100"
    assert main(["report", str(out)]) == 0
    console = capsys.readouterr().out
    assert "0.4100" in console and "[0.4100" not in console


def test_config_reference_point_is_used_and_named(tmp_path, runs):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("ref_point: [0.2, 0.2]\n")
    out = run_dummy(tmp_path, "cfgref", runs["cache"], "--config", str(cfg), seeds="0,1")
    s = json.loads((out / "summary.json").read_text())
    # Strictly better than (0.2, 0.2): (0.3,0.7) (0.5,0.5) (0.7,0.3).
    # a in [0.2,0.3]: 0.5*0.1; [0.3,0.5]: 0.3*0.2; [0.5,0.7]: 0.1*0.2 -> 0.05 + 0.06 + 0.02 = 0.13.
    assert s["ref_point_source"] == "config"
    assert s["methods"]["dummy"]["hypervolume"]["mean"] == pytest.approx(0.13, abs=1e-12)
    table = (out / "table.md").read_text()
    assert "HV reference point: a=0.2000, b=0.2000; source: config." in table
    assert md_row(table, "dummy")[2] == "0.1300 [0.1300, 0.1300]"


# --- load_summaries -----------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (None, "expected a run directory containing summary.json, got a directory without summary.json"),
    ("{not json", "summary.json is not valid JSON (Expecting property name"),
    ("[1, 2]", "expected a JSON object in summary.json, got list"),
    ('{"task": "x"}', "summary.json is not a sipo-bench summary (missing key(s) schema_version, objectives, methods)"),
    ('{"schema_version": 99, "task": "x", "objectives": [], "methods": {}}', "expected summary schema_version <= 3, got 99"),
    ('{"schema_version": 1, "task": "x", "objectives": [{"name": "a"}], "methods": {}}', "expected `objectives`"),
])
def test_load_summaries_errors_name_the_dir(tmp_path, capsys, content, message):
    d = tmp_path / "run"
    d.mkdir()
    if content is not None:
        (d / "summary.json").write_text(content)
    with pytest.raises(UsageError) as e:
        merge.load_summaries([d])
    assert str(d) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)
    assert main(["report", str(d)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("sipo-bench: error: `") and str(d) in err[0]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["methods"]["dummy"].update(hypervolume="x"),
     "`methods.dummy.hypervolume`: expected an object or null, got 'x' (str)"),
    (lambda s: s["methods"]["dummy"]["hypervolume"].update(mean="0.41"),
     "`methods.dummy.hypervolume.mean`: expected a finite number, got '0.41' (str)"),
    (lambda s: s["methods"]["dummy"]["points"][0].update(scores=["a", 0.5]),
     "`methods.dummy.points[0].scores[0]`: expected a number, got 'a' (str)"),
    (lambda s: s["methods"]["dummy"]["points"][0].update(seed="0"),
     "`methods.dummy.points[0].seed`: expected an integer, got '0' (str)"),
    (lambda s: s["methods"]["dummy"].update(igd_plus="none"), "`methods.dummy.igd_plus`: expected a finite number or null"),
    (lambda s: s.update(ref_point="abc"), "`ref_point`: expected a list of finite numbers or null, got 'abc' (str)"),
    (lambda s: s.update(ref_point=[0.5]), "`ref_point`: expected 2 values (one per objective), got [0.5]"),
    (lambda s: s.update(seeds="0,1,2"), "`seeds`: expected a list of integers, got '0,1,2' (str)"),
    (lambda s: s["objectives"][0].update(higher_is_better="yes"), "`objectives[0].higher_is_better`: expected true or false"),
])
def test_wrongly_typed_summary_fields_are_one_line_errors(tmp_path, runs, capsys, edit, message):
    s = json.loads((runs["three"] / "summary.json").read_text())
    edit(s)
    d = tmp_path / "edited"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(s))
    for argv in (["report", str(d)], ["report", str(d), str(runs["one"]), "--out", str(tmp_path / "m")]):
        assert main(argv) == 2
        err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
        assert err == [f"sipo-bench: error: {err[0].split('error: ', 1)[1]}"] and message in err[0], err
        assert str(d / "summary.json") in err[0]
    assert not (tmp_path / "m").exists() and sorted(p.name for p in d.iterdir()) == ["summary.json"]


def test_report_into_a_read_only_run_dir_suggests_out(tmp_path, runs, capsys):
    from fsfaults import remount, tmpfs

    with tmpfs(tmp_path / "ro") as ro:
        d = ro / "run"
        shutil.copytree(runs["three"], d)
        remount(ro, "ro")
        assert main(["report", str(d)]) == 2
        err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
        assert err == [f"sipo-bench: error: `{d}`: cannot write the report into {str(d)!r} (Read-only file system in "
                       f"{str(d)!r}); write it elsewhere with --out DIR"]
        assert main(["report", str(d), "--out", str(tmp_path / "elsewhere")]) == 0
        assert (tmp_path / "elsewhere" / "table.md").read_bytes() == (d / "table.md").read_bytes()


def test_load_summaries_missing_dir_and_file_path(tmp_path, runs):
    with pytest.raises(UsageError, match="got nothing there"):
        merge.load_summaries([tmp_path / "nope"])
    [s] = merge.load_summaries([runs["three"] / "summary.json"])
    assert s["task"] == "dummy"


# --- merge --------------------------------------------------------------------------------------


def renamed(summary: dict, old: str, new: str) -> dict:
    s = copy.deepcopy(summary)
    s["methods"] = {(new if k == old else k): v for k, v in s["methods"].items()}
    return s


def test_merge_unites_methods_and_recomputes_indicators(tmp_path, runs):
    strong = run_dummy(tmp_path, "strong", runs["cache"], "--config", str(_yaml(tmp_path, "dummy: {strength: 1.0}")),
                       seeds="1,2")
    [a, b] = merge.load_summaries([runs["three"], strong])
    merged = merge.merge([a, renamed(b, "dummy", "dummy-strong")])
    assert list(merged["methods"]) == ["dummy", "dummy-strong"]
    assert merged["seeds"] == [0, 1, 2]
    assert [m["run_id"] for m in merged["merged_from"]] == [a["run"]["run_id"], b["run"]["run_id"]]
    # Strength 1.0 with 10 letters (round half to even): (0,1) (0.2,0.8) (0.5,0.5) (0.8,0.2) (1,0), also on
    # a + b = 1. HV vs floor = 0.2*0.8 + 0.3*0.5 + 0.3*0.2 = 0.37, over seeds 1 and 2 only.
    hv = merged["methods"]["dummy-strong"]["hypervolume_floor"]
    assert hv["mean"] == pytest.approx(STRONG_HV_FLOOR) and sorted(hv["per_seed"]) == ["1", "2"]
    assert merged["methods"]["dummy"]["hypervolume_floor"]["mean"] == pytest.approx(DUMMY_HV_FLOOR)
    # Union front: every mean point of both (all on a + b = 1, (0.5,0.5) once), IGD+ recomputed against it.
    union = merged["union_front"]
    assert len(union) == 9
    for m in merged["methods"].values():
        assert m["igd_plus"] == pytest.approx(pareto.igd_plus([f["scores"] for f in m["front"]], union, [True, True]))
    # Each front is 0.1 short (on one objective) of each of the other's four non-shared points and
    # reaches its own five: 4 * 0.1 / 9 for both.
    assert merged["methods"]["dummy"]["igd_plus"] == pytest.approx(0.4 / 9)
    assert merged["methods"]["dummy-strong"]["igd_plus"] == pytest.approx(0.4 / 9)


def test_merge_keeps_every_seed_of_a_method(tmp_path, runs):
    """The seed-0 run and the seeds-1,2 run of one config merge into exactly the 3-seed run."""
    rest = run_dummy(tmp_path, "seeds12", runs["cache"], seeds="1,2")
    [one, two, three] = merge.load_summaries([runs["one"], rest, runs["three"]])
    merged = merge.merge([one, two])
    m, ref = merged["methods"]["dummy"], three["methods"]["dummy"]
    assert merged["seeds"] == [0, 1, 2] and len(m["points"]) == 15
    assert sorted((tuple(p["w"]), p["seed"]) for p in m["points"]) == sorted((tuple(p["w"]), p["seed"]) for p in ref["points"])
    assert sorted(m["hypervolume_floor"]["per_seed"]) == ["0", "1", "2"]
    for key in ("hypervolume", "hypervolume_floor", "front", "best"):
        assert m[key] == ref[key], key
    assert sorted(map(json.dumps, m["mean_points"])) == sorted(map(json.dumps, ref["mean_points"]))
    assert all(p["n_seeds"] == 3 for p in m["mean_points"])
    # the same point in both runs with the same scores is no conflict (merging a run with itself)
    assert merge.merge([one, one])["methods"]["dummy"]["points"] == one["methods"]["dummy"]["points"]


def test_merge_conflicts_are_errors(tmp_path, runs):
    [one, three] = merge.load_summaries([runs["one"], runs["three"]])
    tampered = copy.deepcopy(three)
    p0 = next(p for p in tampered["methods"]["dummy"]["points"] if p["seed"] == 0 and p["w"] == [0.5, 0.5])
    p0["scores"] = [0.6, 0.4]
    with pytest.raises(UsageError) as e:
        merge.merge([one, tampered])
    assert "cannot merge method 'dummy': seed 0, w=[0.5, 0.5] has scores [0.5, 0.5] in run" in str(e.value)
    strong = run_dummy(tmp_path, "strong2", runs["cache"], "--config", str(_yaml(tmp_path, "dummy: {strength: 1.0}")),
                       seeds="1")
    [b] = merge.load_summaries([strong])
    with pytest.raises(UsageError, match=r"cannot merge method 'dummy': its config differs between run \w+ and run \w+ "
                                         r"\(field\(s\) strength\)"):
        merge.merge([one, b])
    failed = copy.deepcopy(three)
    failed["methods"]["dummy"].update(status="failed", error="stage x: boom")
    merged = merge.merge([one, failed])["methods"]["dummy"]
    assert merged["status"] == "failed" and merged["error"] == f"run {three['run']['run_id']}: stage x: boom"
    assert merged["hypervolume"] is None


def test_merge_of_one_changes_no_number(runs):
    [a] = merge.load_summaries([runs["three"]])
    merged = merge.merge([a])
    for key in ("hypervolume", "hypervolume_floor", "igd_plus", "front"):
        assert merged["methods"]["dummy"][key] == a["methods"]["dummy"][key]
    assert merged["union_front"] == a["union_front"] and merged["ref_point"] == a["ref_point"]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(task="other"), "cannot merge runs of different tasks: 'dummy'"),
    (lambda s: s["objectives"][1].update(higher_is_better=False), "cannot merge runs with different objectives"),
    (lambda s: s["objectives"].reverse(), "cannot merge runs with different objectives"),
    (lambda s: s.update(floor=[0.1, 0.0]), "cannot merge runs with different HV floors"),
    (lambda s: s.update(ref_point_source="config"), "cannot merge runs with different reference-point sources"),
    (lambda s: s["ref_points"].update({"1": [0.5, 0.6]}), "reference points differ for seed 1: [0.5, 0.5] and [0.5, 0.6]"),
])
def test_merge_rejects_incomparable_runs(runs, change, message):
    [a] = merge.load_summaries([runs["three"]])
    b = renamed(a, "dummy", "other")
    change(b)
    with pytest.raises(UsageError) as e:
        merge.merge([a, b])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_report_merges_several_dirs(tmp_path, runs, capsys):
    seed3 = run_dummy(tmp_path, "seed3", runs["cache"], seeds="3")
    merged_dir = tmp_path / "merged"
    assert main(["report", str(runs["one"]), str(seed3), "--out", str(merged_dir)]) == 0
    s = json.loads((merged_dir / "summary.json").read_text())
    assert s["seeds"] == [0, 3] and len(s["merged_from"]) == 2
    assert sorted({p["seed"] for p in s["methods"]["dummy"]["points"]}) == [0, 3]
    table = (merged_dir / "table.md").read_text()
    assert "Merged from runs:" in table
    assert md_row(table, "dummy")[3] == "0.4100 [0.4100, 0.4100]"  # both seeds' points
    capsys.readouterr()
    assert main(["report", str(runs["one"]), str(seed3)]) == 2  # several dirs need --out
    assert "`--out`" in capsys.readouterr().err


def _yaml(tmp_path: Path, method_options: str) -> Path:
    p = tmp_path / f"cfg-{abs(hash(method_options))}.yaml"
    p.write_text(textwrap.dedent(f"method_options:\n  {method_options}\n"))
    return p


# --- Synthetic summaries: failures, extras, mixed directions, k = 3 ----------------------------


def test_table_md_failed_methods_extras_and_directions():
    s = k2_summary()
    table = report.table_md(s)
    assert table == report.table_md(copy.deepcopy(s))
    assert "- Objectives: helpful (higher is better), harm (lower is better)." in table
    assert "best helpful (max)" in table and "best harm (min)" in table
    assert "HV vs floor" not in table  # no floor declared
    # Failed method: in the table as failed, its error below with the pipe escaped.
    assert md_row(table, "modpo")[:3] == ["modpo", "failed", "-"]
    assert "## Failed methods" in table
    assert "- `modpo`: stage modpo[w=0.75\\|0.25]: RuntimeError: out of memory" in table
    # Numbers trace to the summary.
    soups = s["methods"]["dpo-soups"]
    lo, hi = soups["hypervolume"]["interval"]["lo"], soups["hypervolume"]["interval"]["hi"]
    assert md_row(table, "dpo-soups")[2] == f"{soups['hypervolume']['mean']:.4f} [{lo:.4f}, {hi:.4f}]"
    assert md_row(table, "dpo-soups")[4] == str(len(soups["front"])) == "4"  # w=(0.5,0.5) is dominated
    # Extra stage results: flat numbers only, one column per seed and their mean.
    assert "## Extra stage results" in table
    assert "|---|---|---|--:|--:|--:|" in table  # method, stage, field left; numbers right
    assert "| dpo-soups | filter | kept | 12 | 14 | 13.0000 |" in table
    assert "| dpo-soups | filter | rate | 0.3000 | 0.3500 | 0.3250 |" in table
    assert "note" not in table and "nested" not in table and "| flag |" not in table


def test_table_md_ignores_what_differs_between_reruns():
    s = k2_summary()
    t = copy.deepcopy(s)
    t["run"] = {"run_id": "other", "date": "2030-01-01T00:00:00+00:00", "wall_seconds": 99.0, "stages": {"total": 9}}
    for m in t["methods"].values():
        m["seconds"], m["stage_seconds"] = 123.0, {"train": 123.0}
    assert report.table_md(t) == report.table_md(s)
    assert report.points_csv(t) == report.points_csv(s)
    t["methods"]["dpo"]["igd_plus"] = 0.5
    assert report.table_md(t) != report.table_md(s)


def test_no_extra_or_failure_sections_when_absent(runs):
    table = (runs["three"] / "table.md").read_text()
    assert "## Failed methods" not in table and "## Extra stage results" not in table


def test_console_table_has_the_same_content():
    from rich.console import Console

    s = k2_summary()
    console = Console(record=True, width=200)
    console.print(report.console_table(s))
    text = console.export_text()
    soups = s["methods"]["dpo-soups"]
    lo, hi = soups["hypervolume"]["interval"]["lo"], soups["hypervolume"]["interval"]["hi"]
    for needle in ("dpo-soups", "modpo", "failed", f"{soups['hypervolume']['mean']:.4f}", f"[{lo:.4f}, {hi:.4f}]",
                   "source: base policy mean test scores", "modpo failed: stage modpo[w=0.75|0.25]",
                   "extra stage results", "13.0000", "best harm ↓", "time s", "1.5000"):
        assert needle in text, needle


def test_number_format_is_stable():
    assert text.num(-0.0) == "0.0000"
    assert text.num(1e-5) == "1.000e-05" and text.num(-2.5e7) == "-2.500e+07"
    assert text.num(0.123456) == "0.1235" and text.num(12) == "12" and text.num(None) == "-"


def test_k2_plot_points_lines_and_reference(tmp_path):
    s = k2_summary()
    fig = figures.front_figure(s)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "helpful (higher is better)" and ax.get_ylabel() == "harm (lower is better)"
    gids = {l.get_gid() for l in ax.get_lines() if l.get_gid()}
    assert gids == {"front:dpo-soups"}  # dpo has vertices only: points, no line; failed modpo: no line
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["dpo-soups", "dpo", "modpo (failed)"]
    assert "HV reference point:\nbase policy (mean over seeds)" in legend and "dominated mean point" in legend
    outdir.render_files(s, tmp_path)
    img = png_pixels(tmp_path / "front.png")
    assert img.shape[0] >= 400 and img.shape[1] >= 500
    assert_not_blank(img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.png", "points.csv", "table.md"]  # no temp files


def test_k3_plot_has_pairwise_panels(tmp_path):
    s = k3_summary()
    fig = figures.front_figure(s)
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_visible()]
    assert labels == [("helpful (higher is better)", "honest (higher is better)"),
                      ("helpful (higher is better)", "harmless (higher is better)"),
                      ("honest (higher is better)", "harmless (higher is better)")]
    figures.plot_front(s, tmp_path / "front.png")
    img = png_pixels(tmp_path / "front.png")
    assert img.shape[1] > 2 * img.shape[0]  # three panels side by side
    assert_not_blank(img)
    for third in np.array_split(img[..., :3], 3, axis=1):  # every panel has content
        assert third.std() > 0.05
    table = report.table_md(s)
    assert "HV vs ref (0.2250, 0.2000, 0.1750) [t 95% CI] | HV vs floor (0.0000, 0.0000, 0.0000) |" in table  # no floor HVs here
    assert "Per seed (each seed's HV uses its own): seed 0: (0.2000, 0.2000, 0.2000); seed 1: (0.2500, 0.2000, 0.1500)." in table


@pytest.mark.parametrize("k, panels", [(1, 1), (4, 6)])
def test_plot_one_and_four_objectives(tmp_path, k, panels):
    names = "abcd"[:k]
    refs = {0: [0.0] * k}
    grid = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)] + ([[1.0 / k] * k] if k > 1 else [])
    pts = [(w, 0, [0.1 + 0.8 * x for x in w]) for w in grid]
    s = synthetic_summary([(n, True) for n in names], {"m": method_entry(pts, [True] * k, refs)}, refs, seeds=(0,))
    fig = figures.front_figure(s)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == panels
    figures.plot_front(s, tmp_path / "front.png")
    assert_not_blank(png_pixels(tmp_path / "front.png"))
    # HV vs (0,..,0). k = 1: 0.9. k = 4, inclusion-exclusion: the four vertex boxes (0.9,0.1,0.1,0.1)...
    # have volume 0.0009 each and every intersection is 0.1^4, so their union is
    # 4*0.0009 - 6*0.0001 + 4*0.0001 - 0.0001 = 0.0033; the centre box 0.3^4 = 0.0081 meets them in
    # boxes (0.3,0.1,0.1,0.1) of 0.0003 whose union is 4*0.0003 - 6*0.0001 + 4*0.0001 - 0.0001 = 0.0009.
    # Total 0.0033 + 0.0081 - 0.0009 = 0.0105.
    assert md_row(report.table_md(s), "m")[2] == ("0.9000" if k == 1 else "0.0105")


def test_trained_on_and_variant_columns_when_methods_carry_them():
    s = k2_summary()
    assert "trained on" not in report.table_md(s)  # absent from every entry: no columns
    s["methods"]["dpo-soups"]["trained_on"] = "pair labels"
    s["methods"]["dpo"]["trained_on"] = "pair labels"
    s["methods"]["dpo"]["variant"] = "beta=0.1"
    table = report.table_md(s)
    assert "| method | trained on | variant | status | HV vs ref (0.0500, 1.0500) [t 95% CI] |" in table
    assert md_row(table, "dpo")[:4] == ["dpo", "pair labels", "beta=0.1", "ok"]
    assert md_row(table, "modpo")[:4] == ["modpo", "-", "-", "failed"]
    assert "|---|---|---|---|--:|" in table  # the label columns are text (left-aligned)
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(report.console_table(s))
    text = console.export_text()
    assert "trained on" in text and "beta=0.1" in text
