"""One tuning protocol (issue 22): `tune` runs every named method once per trial of its declared
search space (the same number for each), evaluated on the validation prompts, and the summary
names each method's best trial by validation HV. Bad spaces are exit 2 before anything runs."""

from __future__ import annotations

import json

import pytest

from sipo_bench.cli import main
from sipo_bench.configs.tuning import check_tune, expand, trial_labels, tuning_summary
from sipo_bench.configs.variants import parse_label


def test_trials_are_variants_that_read_back_as_their_values():
    trials = trial_labels("modpo", {"learning_rate": [1e-05, 0.005], "beta": [0.1, 0.5]})
    assert [t for t, _ in trials][0] == "modpo@learning_rate=1.0e-05,beta=0.1"
    for label, values in trials:
        assert parse_label(label) == ("modpo", values)  # YAML 1.1 would read 1e-05 as text
    assert len(trials) == 4
    check_tune({"dpo": {"learning_rate": [0.1], "beta": [0.1, 0.2]}}, "val")  # a well-formed space passes
    assert expand(["mod", "modpo"], {"modpo": {"beta": [0.1, 0.5]}}) == ["mod", "modpo@beta=0.1", "modpo@beta=0.5"]


def test_the_chosen_trial_has_the_highest_validation_hv_first_on_ties():
    tune = {"dpo": {"learning_rate": [0.001, 0.002, 0.004]}}
    hv = {"dpo@learning_rate=0.001": 0.02, "dpo@learning_rate=0.002": 0.05, "dpo@learning_rate=0.004": 0.05}
    methods = {k: {"hypervolume": {"mean": v}} for k, v in hv.items()}
    t = tuning_summary(tune, methods)["dpo"]
    assert t["chosen"] == "dpo@learning_rate=0.002" and t["chosen_values"] == {"learning_rate": 0.002}
    assert [x["hv_val"] for x in t["trials"]] == [0.02, 0.05, 0.05]
    assert t["note"] == "tied with dpo@learning_rate=0.004 (the first is chosen)"
    methods["dpo@learning_rate=0.002"] = {"hypervolume": None, "status": "failed"}
    t = tuning_summary(tune, methods)["dpo"]
    assert t["chosen"] == "dpo@learning_rate=0.004"  # a failed trial is never chosen
    assert "edge of the search space (learning_rate=0.004)" in t["note"]  # the best may lie beyond
    ties = tuning_summary(tune, {k: {"hypervolume": {"mean": 0.0}} for k in hv})["dpo"]
    assert ties["chosen"] is None and ties["note"] == "all trials tie: nothing to choose"
    failed = tuning_summary(tune, {})["dpo"]
    assert failed["chosen"] is None and failed["note"] == "every trial failed"


CASES = [
    ("eval_split: test\ntune: {dpo: {learning_rate: [0.001]}}", "`eval_split`: expected val with `tune`"),
    ("eval_split: val\ntune: {dpo: {learning_rate: []}}", "`tune.dpo.learning_rate`: expected a non-empty list of values, got []"),
    ("eval_split: val\ntune: {dpo: {learning_rate: [.nan, 0.1]}}", "`tune.dpo.learning_rate`: expected finite scalar values, got nan"),
    ("eval_split: val\ntune: {dpo: {learning_rate: [.inf]}}", "`tune.dpo.learning_rate`: expected finite scalar values, got inf"),
    ("eval_split: val\ntune: {dpo: {}}", "`tune.dpo`: expected a non-empty mapping of field: [values], got {}"),
    ("eval_split: val\ntune: {dpo: {learning_rate: [0.1, 0.1]}}", "`tune.dpo.learning_rate`: expected distinct values"),
    ("eval_split: val\nmethods: [dpo, dpo-lw]\ntune: {dpo: {learning_rate: [0.1, 0.2]}, dpo-lw: {learning_rate: [0.1]}}",
     "`tune`: expected the same number of trials for every method (an equal tuning budget), got dpo: 2, dpo-lw: 1"),
    ("eval_split: val\ntune: {modpo: {learning_rate: [0.1]}}", "`tune.modpo`: expected a method of the run (dpo), got 'modpo'"),
    ("eval_split: val\ntune: {dpo: {learning_rat: [0.1]}}", "learning_rat"),
    ("eval_split: train", "`eval_split`"),
]


@pytest.mark.parametrize("yaml_text, message", CASES)
def test_bad_tuning_is_a_usage_error(usage_error, yaml_text, message):
    body = yaml_text if "methods:" in yaml_text else "methods: [dpo]\n" + yaml_text
    assert message in usage_error("task: synthetic-hh\nweights: 2\n" + body)


@pytest.mark.slow
def test_a_tuning_run_evaluates_on_validation_prompts_and_names_the_best_trial(tmp_path, cache_dir):
    pytest.importorskip("torch")
    import yaml

    from sipo_bench.execution.stages import Cache, read_jsonl

    cfg = {"task": "synthetic-hh", "methods": ["dpo", "mod"], "weights": 1, "max_test_prompts": 12,
           "eval_split": "val", "tune": {"dpo": {"learning_rate": [0.0005, 0.005]}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["run", "--config", str(path), "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["methods"]) == {"dpo@learning_rate=0.0005", "dpo@learning_rate=0.005", "mod"}
    t = s["tuning"]["dpo"]
    hvs = {x["label"]: x["hv_val"] for x in t["trials"]}
    assert hvs == {m: s["methods"][m]["hypervolume"]["mean"] for m in hvs}
    if len(set(hvs.values())) == 1:  # the kernels decide the HVs: a tie is reported, never a choice
        assert t["chosen"] is None and t["note"] == "all trials tie: nothing to choose"
    else:
        assert t["chosen"] == max(hvs, key=hvs.get)
    assert s["evaluation"]["split"] == "val" and "validation" in s["ref_point_source"]
    # every point (and the reference) was generated on the validation prompts, none on test
    events = [json.loads(l) for l in (out / "logs" / "stages.jsonl").read_text().splitlines()]
    by = {e["stage"]: e["key"] for e in events if e["event"] in ("done", "cached")}
    cache = Cache(cache_dir)
    data = cache.path(by["data[seed=0]"])
    val = list(dict.fromkeys(r["prompt"] for r in read_jsonl(data / "val.jsonl")))[:12]
    test = {r["prompt"] for r in read_jsonl(data / "test.jsonl")}
    for name, key in by.items():
        if name.startswith("generate["):
            prompts = list(dict.fromkeys(r["prompt"] for r in read_jsonl(cache.path(key) / "generations.jsonl")))
            assert prompts == val and not (set(prompts) & test), name
    table = (out / "table.md").read_text()
    assert "## Tuning" in table and "VALIDATION prompts" in table
    assert ("**chosen**" in table) == (t["chosen"] is not None) and (t["note"] or "") in table
