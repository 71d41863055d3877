"""index.html: a self-contained page rendered from summary.json and the run's files, checked as
text and in a real headless Chromium (loaded from file://, no network, no console error, the
front and a curve on screen)."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser import Browser, chromium  # noqa: E402

from sipo_bench.reporting import curves  # noqa: E402
from sipo_bench.reporting.html_report import NOT_RECORDED, render_html, run_dir_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: a committed 10-seed run folder from before compute counters, curves and samples were recorded
MAIN = ROOT / "results" / "synthetic-ablation"
#: the main preset's summary as committed before those were recorded (frozen: results/ moves on)
OLD_MAIN = ROOT / "tests" / "fixtures" / "old-summaries" / "synthetic-main-2026-12-02.json"

needs_chromium = pytest.mark.skipif(chromium() is None, reason="no chromium on PATH (apt-get install chromium; CI "
                                                              "installs it in .ci/run)")


def old_summary() -> dict:
    """The frozen old main summary as `sipo-bench report` reads it (older schemas upgraded)."""
    from sipo_bench.reporting.merge import load_summaries

    return load_summaries([OLD_MAIN])[0]


def with_curves_and_samples(tmp_path: Path) -> tuple[dict, dict[str, bytes]]:
    """The committed summary plus one recorded training stage (diverging) and samples."""
    s = old_summary()
    d = tmp_path / "stage"
    d.mkdir()
    logs = [{"step": i, "loss": 0.5 + 0.05 * i, "rewards/margins": 0.1 * i, "learning_rate": 1e-3} for i in range(1, 9)]
    logs += [{"step": 4, "eval_loss": 0.7}, {"step": 8, "eval_loss": 0.8}]
    curves.write_curves(d, logs, trainer="PreferenceTrainer", extra={"initial_val_loss": 0.69},
                        selection={"load_best": True, "metric": "eval_loss", "greater_is_better": False,
                                   "selected_step": 4, "global_step": 8})
    record = curves.read_curves(d)

    class St:
        name, key, kind, config = "dpo[helpful,seed=0]", "k0", "dpo", {"seed": 0}

    entry = curves.stage_entry(St, record)
    entry["methods"] = ["dpo", "dpo-soups"]
    s["training"] = {"stages": {"k0": entry}, "flags": dict(curves.FLAGS)}
    for name, m in s["methods"].items():
        m["training"] = ["k0"] if name in entry["methods"] else []
    samples = {"per_point": 2, "seed": 0, "objectives": ["helpful", "harmless"], "points": [
        {"method": m, "w": w, "seed": 0, "samples": [
            {"prompt_index": i, "prompt": f"prompt {i} <b>", "response": f"{m} says {i} at {w}",
             "scores": {"helpful": 0.5, "harmless": 1.0}} for i in range(2)]}
        for m, w in (("dpo-soups", [0.0, 1.0]), ("dpo-soups", [0.5, 0.5]), ("mod", [0.5, 0.5]))]}
    s["samples"] = {"file": "samples.json", "per_point": 2, "seed": 0}
    files = {entry["file"]: (d / curves.CURVES).read_bytes(), "samples.json": json.dumps(samples).encode()}
    return s, files


def test_old_summary_renders_and_says_what_was_not_recorded():
    page = render_html(old_summary())
    assert page.count(NOT_RECORDED) >= 2 and "id='training-none'" in page and "id='samples-none'" in page
    assert "id='front-pooled'" in page and "id='fronts-per-seed'" in page  # 10 seeds: one front each
    assert "not recorded for this run" in page.split("id='compute'")[1]  # the compute column
    # self-contained: every src/href is inline or an anchor
    refs = re.findall(r"(?:src|href)=['\"]([^'\"]*)", page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r for r in refs if not r.startswith(("data:", "#"))]
    assert render_html(old_summary()) == page  # deterministic


def test_page_shows_curves_flags_and_filterable_samples(tmp_path):
    s, files = with_curves_and_samples(tmp_path)
    page = render_html(s, files)
    assert "<svg class='curve'" in page and "rewards/margins" in page
    assert curves.FLAGS["loss_rose"] in page and curves.FLAGS["val_never_improved"] in page
    assert curves.FLAGS["selected_first"] in page
    assert "id='filter-method'" in page and "data-method='mod'" in page and "data-w='0.5/0.5'" in page
    assert "prompt 0 &lt;b&gt;" in page  # text is escaped


def test_run_dir_files_reads_curves_and_samples(tmp_path):
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves" / "k.json").write_text("{}")
    (tmp_path / "samples.json").write_text("{}")
    assert set(run_dir_files(tmp_path)) == {"curves/k.json", "samples.json"}


def test_report_html_writes_index_html_and_leaves_the_other_files_unchanged(tmp_path):
    from sipo_bench.cli import main

    d = tmp_path / "main"
    shutil.copytree(MAIN, d)
    (d / "index.html").unlink(missing_ok=True)  # the committed page: rewritten below
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert main(["report", "--html", str(d)]) == 0
    from sipo_bench.reporting.merge import load_summaries

    assert (d / "index.html").read_text() == render_html(load_summaries([MAIN])[0]) == (MAIN / "index.html").read_text()
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != "index.html"} == before


def non_blank(png: bytes) -> float:
    """Share of pixels that are not the background colour."""
    from matplotlib.image import imread

    img = imread(io.BytesIO(png))[..., :3]
    bg = img[0, 0]
    return float((abs(img - bg).sum(axis=-1) > 0.05).mean())


def check_in_browser(path: Path, curve: bool = True) -> None:
    with Browser() as b:
        b.open(path)
        assert b.errors() == []
        assert [u for u in b.requests() if not u.startswith(("file:", "data:"))] == []  # no network
        front = b.box("#front-pooled img")
        assert front and front["width"] > 200 and front["height"] > 150
        assert b.evaluate("document.querySelector('#front-pooled img').naturalWidth") > 0  # the PNG decoded
        assert non_blank(b.screenshot(front)) > 0.02
        if curve:
            box = b.box("svg.curve")
            assert box and box["width"] > 100 and box["height"] > 100
            assert non_blank(b.screenshot(box)) > 0.01
            # the filters act: only mod's column stays
            b.evaluate("var m=document.getElementById('filter-method'); m.value='mod'; m.dispatchEvent(new Event('change'))")
            shown = b.evaluate("Array.from(document.querySelectorAll('th[data-point]')).filter("
                               "e => e.offsetParent !== null).map(e => e.getAttribute('data-method'))")
            assert shown and set(shown) == {"mod"}
        assert b.errors() == []


@needs_chromium
def test_page_in_headless_chromium(tmp_path):
    s, files = with_curves_and_samples(tmp_path)
    page = tmp_path / "index.html"
    page.write_text(render_html(s, files))
    check_in_browser(page)


@needs_chromium
def test_old_summary_page_in_headless_chromium(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(render_html(old_summary()))
    check_in_browser(page, curve=False)


@pytest.mark.slow
def test_a_run_keeps_curves_samples_page_and_tracker_files(cache_dir, tmp_path):
    """A real run: every training stage upstream of the method kept its curves in the cache and
    OUT/curves/ holds copies; samples.json holds what the policies said with their scores;
    index.html opens in Chromium; TensorBoard got event files. A rerun from the cache, without
    the tracker, gives the same curves and the same numbers."""
    from sipo_bench.cli import main
    from sipo_bench.execution.stages import Cache

    out = tmp_path / "out"
    args = ["run", "--task", "synthetic-hh", "--methods", "dpo-soups", "--weights", "2", "--max-test-prompts", "8",
            "--cache-dir", str(cache_dir), "--quiet", "--samples-per-point", "2"]
    assert main([*args, "--out", str(out), "--tracking", "tensorboard"]) == 0
    s = json.loads((out / "summary.json").read_text())
    stages = s["training"]["stages"]
    assert {st["stage"] for st in stages.values()} >= {"base[seed=0]", "dpo[helpful,seed=0]", "dpo[harmless,seed=0]"}
    assert set(s["methods"]["dpo-soups"]["training"]) == set(stages)
    cache = Cache(cache_dir)
    for key, st in stages.items():
        assert (out / st["file"]).read_bytes() == (cache.path(key) / curves.CURVES).read_bytes()
    samples = json.loads((out / "samples.json").read_text())
    assert [(p["method"], p["w"]) for p in samples["points"]] == [("base", None)] + [
        ("dpo-soups", w) for w in ([0.0, 1.0], [0.5, 0.5], [1.0, 0.0])]
    assert all(len(p["samples"]) == 2 and set(p["samples"][0]["scores"]) == {"helpful", "harmless"}
               for p in samples["points"])
    page = (out / "index.html").read_text()
    assert page == render_html(s, run_dir_files(out)) and "<svg class='curve'" in page
    assert list((out / "tracking" / "tensorboard").rglob("events.out.tfevents.*"))
    if chromium() is not None:
        with Browser() as b:
            b.open(out / "index.html")
            assert b.errors() == [] and b.box("svg.curve")["height"] > 100
    again = tmp_path / "again"
    assert main([*args, "--out", str(again)]) == 0
    s2 = json.loads((again / "summary.json").read_text())
    assert s2["training"] == s["training"] and not (again / "tracking").exists()
    assert [p["scores"] for p in s2["methods"]["dpo-soups"]["points"]] == [p["scores"] for p in s["methods"]["dpo-soups"]["points"]]


@pytest.mark.parametrize("d", sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "results").rglob("summary.json")))
def test_every_committed_page_is_rendered_from_its_summary(d):
    from sipo_bench.reporting.merge import load_summaries

    path = ROOT / d
    assert (path / "index.html").read_text() == render_html(load_summaries([path])[0], run_dir_files(path)), (
        f"re-render with: sipo-bench report --html {d}")


def test_point_samples_take_the_first_response_of_the_first_prompts(tmp_path):
    from sipo_bench.reporting.samples import point_samples
    from sipo_bench.execution.stages import write_jsonl

    rows = [{"prompt": f"p{i}", "response": f"r{i}.{j}", "prompt_index": i, "a": float(i), "b": float(j)}
            for i in range(3) for j in range(2)]  # two samples per prompt
    write_jsonl(tmp_path / "scores.jsonl", rows)
    got = point_samples(tmp_path, ["a", "b"], 2)
    assert [(s["prompt"], s["response"], s["scores"]) for s in got] == [("p0", "r0.0", {"a": 0.0, "b": 0.0}),
                                                                        ("p1", "r1.0", {"a": 1.0, "b": 0.0})]
    assert point_samples(tmp_path / "missing", ["a"], 2) == []
