"""Training curves: the file a stage keeps, the flags read off it, and their place in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipo_bench.reporting import curves
from sipo_bench.reporting.report import table_md

ROOT = Path(__file__).resolve().parent.parent


def record(losses, evals=(), selected=None, initial_val=None):
    logs = [{"step": i + 1, "loss": x, "learning_rate": 1e-3} for i, x in enumerate(losses)]
    logs += [{"step": s, "eval_loss": v} for s, v in evals]
    logs.append({"step": len(losses), "train_runtime": 1.0})
    return logs, {"load_best": selected is not None, "metric": "eval_loss", "greater_is_better": False,
                  "selected_step": selected, "global_step": len(losses)}, {"initial_val_loss": initial_val}


def written(tmp_path, *args, **kw):
    logs, sel, extra = record(*args, **kw)
    curves.write_curves(tmp_path, logs, trainer="T", selection=sel, extra=extra)
    return curves.read_curves(tmp_path)


def test_file_splits_train_eval_and_summary_logs(tmp_path):
    rec = written(tmp_path, [0.7, 0.5], evals=[(2, 0.6)])
    assert [r["step"] for r in rec["train"]] == [1, 2]
    assert rec["eval"] == [{"step": 2, "eval_loss": 0.6}]
    assert "train_runtime" in rec["other"][0]
    assert curves.read_curves(tmp_path / "nowhere") is None


def test_non_finite_values_are_written_as_null_and_parse_as_json(tmp_path):
    rec = written(tmp_path, [0.7, float("nan")])
    assert rec["train"][1]["loss"] is None
    json.loads((tmp_path / curves.CURVES).read_text())  # strict JSON: no NaN token


@pytest.mark.parametrize("losses,evals,selected,initial,expected", [
    ([0.7, 0.6, 0.5], [(1, 0.7), (3, 0.5)], 3, 0.72, []),                       # healthy
    ([0.5, 0.6, 0.9], [], None, None, ["loss_rose"]),                          # diverging
    ([0.7, 0.6, 0.5], [(1, 0.8), (3, 0.9)], 1, 0.75, ["val_never_improved", "selected_first"]),
    ([0.7, 0.6, 0.5], [(1, 0.6), (3, 0.65)], 1, None, ["val_never_improved", "selected_first"]),  # ref: first eval
    ([0.7, 0.6, 0.5], [(1, 0.6), (3, 0.65)], 1, 0.9, ["selected_first"]),      # improved on the initial loss
    ([0.7], [(1, 0.6)], 1, None, []),                                          # one eval: nothing to compare
])
def test_flags(tmp_path, losses, evals, selected, initial, expected):
    assert curves.flags(written(tmp_path, losses, evals=evals, selected=selected, initial_val=initial)) == expected


class _Stage:
    def __init__(self, name, key, inputs=(), seed=0):
        self.name, self.key, self.inputs, self.config = name, key, {f"i{i}": s for i, s in enumerate(inputs)}, {"seed": seed}

    @property
    def kind(self):
        return self.name.split("[", 1)[0]


class _Cache:
    def __init__(self, root):
        self.root = root

    def path(self, s):
        return self.root / (s if isinstance(s, str) else s.key)


def _walk(stages):
    out, seen = [], set()

    def visit(s):
        if s.key in seen:
            return
        for d in s.inputs.values():
            visit(d)
        seen.add(s.key)
        out.append(s)

    for s in stages:
        visit(s)
    return out


def test_collect_lists_each_stage_once_with_the_methods_that_use_it(tmp_path):
    dpo = _Stage("dpo[a,seed=0]", "k1")
    mod = _Stage("modpo[w=0.5/0.5,seed=0]", "k2", [dpo])
    for s, losses in ((dpo, [0.7, 0.5]), (mod, [0.5, 0.9])):
        (tmp_path / s.key).mkdir()
        logs, sel, extra = record(losses)
        curves.write_curves(tmp_path / s.key, logs, selection=sel, extra=extra)
    score_a, score_b = _Stage("score[x]", "k3", [dpo]), _Stage("score[y]", "k4", [mod])
    index, files = curves.collect({"soups": [score_a], "modpo": [score_b]}, _Cache(tmp_path), _walk)
    assert set(index) == {"k1", "k2"}
    assert index["k1"]["methods"] == ["soups", "modpo"] and index["k2"]["methods"] == ["modpo"]
    assert index["k2"]["flags"] == ["loss_rose"] and index["k1"]["flags"] == []
    assert set(files) == {"curves/k1.json", "curves/k2.json"}


def test_table_md_of_an_old_summary_is_unchanged_and_a_new_one_lists_flagged_stages():
    from sipo_bench.reporting.merge import load_summaries

    old = load_summaries([ROOT / "results" / "synthetic-ablation"])[0]  # as `sipo-bench report` reads it
    assert table_md(old) == (ROOT / "results" / "synthetic-ablation" / "table.md").read_text()
    assert "## Training" not in table_md(old)
    new = {**old, "training": {"stages": {"k": {"stage": "dpo[helpful,seed=0]", "methods": ["dpo"], "flags": ["loss_rose"],
                                                "first_loss": 0.5, "last_loss": 0.9, "selected_step": None,
                                                "file": "curves/k.json"}}}}
    text = table_md(new)
    assert "## Training" in text and "dpo[helpful,seed=0]" in text and curves.FLAGS["loss_rose"] in text


def test_console_lists_flagged_training_stages():
    from rich.console import Console

    from sipo_bench.reporting.merge import load_summaries

    from sipo_bench.reporting.report import console_table

    old = load_summaries([ROOT / "results" / "synthetic-ablation"])[0]
    new = {**old, "training": {"stages": {"k": {"stage": "modpo[w=0.5/0.5,seed=3]", "methods": ["modpo"],
                                                "flags": ["selected_first"], "first_loss": 0.5, "last_loss": 0.4,
                                                "selected_step": 4, "file": "curves/k.json"}}}}
    console = Console(width=250, record=True)
    console.print(console_table(new))
    text = console.export_text()
    assert "flagged training stages" in text and "modpo[w=0.5/0.5,seed=3]" in text
    console = Console(width=250, record=True)
    console.print(console_table(old))
    assert "flagged training stages" not in console.export_text()
