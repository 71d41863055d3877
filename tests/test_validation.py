"""Issue 14 items 1 and 3: bad input is exit 2 with one line naming the field, before any stage
runs and before OUT or the cache is created (non-finite numbers, grids, seeds, decoding, YAML
documents, encodings, unwritable directories, incompatible methods, executor options)."""

from __future__ import annotations

import pytest

from sipo_bench.cli import main

from fsfaults import tmpfs  # noqa: E402


def one_error(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("sipo-bench: error: ")
    return lines[0]


CASES = [
    # item 1: non-finite numbers are usage errors wherever a float is read (one rule in config._coerce)
    ("method_options: {dpo: {learning_rate: .inf}}", "`method_options.dpo.learning_rate`: expected a finite number, got inf"),
    ("method_options: {dpo: {beta: .inf}}", "`method_options.dpo.beta`: expected a finite number, got inf"),
    ("method_options: {dpo: {beta: .nan}}", "`method_options.dpo.beta`: expected a finite number, got nan"),
    ("method_options: {rewarded-soups: {kl_beta: -.inf}}", "`method_options.rewarded-soups.kl_beta`: expected a finite number, got -inf"),
    ("task_options: {sft_lr: .inf}", "`task_options.sft_lr`: expected a finite number, got inf"),
    ("decoding: {temperature: .nan}", "`decoding.temperature`: expected a finite number, got nan"),
    ("decoding: {temperature: .inf}", "`decoding.temperature`: expected a finite number, got inf"),
    # item 3
    ("weights: [[.nan, 1.0], [1.0, 0.0]]", "`weights[0]`: expected finite numbers, got [nan, 1.0]"),
    ("weights: [[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]]", "`weights[2]`: expected distinct weight vectors, got [0.5, 0.5] again (as `weights[0]`)"),
    ("weights: 100000000", "`weights`: expected a grid of at most 10000 weight vectors, got 100000000 partitions (100000001 vectors over 2 objectives)"),
    ("ref_point: [.nan, 0.5]", "`ref_point[0]`: expected a finite number, got nan"),
    ("ref_point: [high, 0.5]", "`ref_point[0]`: expected a number, got 'high' (str)"),
    ("seeds: [0, -1]", "`seeds[1]`: expected an integer in [0, 2147483647], got -1"),
    ("seeds: [4294967296]", "`seeds[0]`: expected an integer in [0, 2147483647], got 4294967296"),
    ("decoding: {top_p: 0.0}", "`top_p`: expected a probability mass in (0, 1], got 0.0"),
    ("decoding: {top_p: 1.5}", "`top_p`: expected a probability mass in (0, 1], got 1.5"),
    ("executor_options: {address: auto}", "`executor_options.address`: unknown key 'address'. Available: (none)"),
    ("executor: ray\nexecutor_options: {adress: auto}", "`executor_options.adress`: unknown key 'adress'. Did you mean 'address'?"),
]


@pytest.mark.parametrize("yaml_text, message", CASES)
def test_bad_values_are_usage_errors_before_anything_is_created(usage_error, yaml_text, message):
    if "executor: ray" in yaml_text:
        pytest.importorskip("ray")
    assert message in usage_error("task: synthetic-hh\nmethods: [dpo]\n" + yaml_text)


def test_huge_weight_grid_fails_fast(tmp_path, capsys):
    import time

    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: dummy\nweights: 100000000\n")
    t0 = time.perf_counter()
    assert main(["validate", "--config", str(cfg)]) == 2
    assert time.perf_counter() - t0 < 10  # computed from C(p + k - 1, k - 1), never enumerated
    assert "`weights`: expected a grid of at most 10000" in one_error(capsys)


@pytest.mark.parametrize("content, message", [
    (b"- task: dummy\n- seeds: [0]\n", "`--config`: expected a mapping at the top of"),
    (b"42\n", "`--config`: expected a mapping at the top of"),
    (b"task: dummy\nmethods: [\xff\xfe]\n", "`--config`: expected a UTF-8 text file"),
])
def test_yaml_documents_that_are_not_a_config(tmp_path, capsys, content, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(content)
    for cmd in (["validate", "--config", str(cfg)], ["run", "--config", str(cfg), "--out", str(tmp_path / "o")]):
        assert main(cmd) == 2
        line = one_error(capsys)
        assert message in line and str(cfg) in line
    assert not (tmp_path / "o").exists()


def test_empty_yaml_means_all_defaults(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("# nothing set\n")
    assert main(["validate", "--config", str(cfg)]) == 0


def test_model_based_method_named_on_a_model_free_task(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--task", "dummy", "--methods", "dummy,dpo", "--out", str(out), "--cache-dir",
                 str(tmp_path / "c"), "--quiet"]) == 2
    assert ("`methods`: method 'dpo' cannot run on task 'dummy': the task has no language model and "
            "DPOMethod.needs_model is True (the default); set needs_model = False on DPOMethod if it needs no "
            "language model") in one_error(capsys)
    assert not out.exists()


def test_ray_address_needs_the_ray_executor(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--task", "dummy", "--ray-address", "auto", "--out", str(out)]) == 2
    assert "`--ray-address`: only with `--executor ray`, got executor 'local'" in one_error(capsys)
    assert not out.exists()


def test_read_only_out_and_cache_dir(tmp_path, capsys):
    """A read-only filesystem is found by really writing (root ignores permission bits)."""
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        out, cache = tmp_path / "out", tmp_path / "cache"
        assert main(["run", "--task", "dummy", "--out", str(ro / "out"), "--cache-dir", str(cache), "--quiet"]) == 2
        line = one_error(capsys)
        assert "`--out`: expected a writable directory" in line and "Read-only file system" in line
        assert not cache.exists()
        assert main(["run", "--task", "dummy", "--out", str(out), "--cache-dir", str(ro / "cache"), "--quiet"]) == 2
        line = one_error(capsys)
        assert "`--cache-dir`: expected a writable directory" in line and "Read-only file system" in line
        assert not out.exists()
