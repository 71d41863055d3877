"""Baseline methods without training: config validation, planning (shared dpo stages, per-weight
families, MODPO vertices), pair construction. Milliseconds; no torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipo_bench.configs.schema import ConfigError, build
from sipo_bench.contract.interfaces import FitContext, Objective, Task
from sipo_bench.execution.stages import Stage, walk
from sipo_bench.contract.weights import simplex_grid
from sipo_bench_baselines.configs import DPOConfig, MODConfig, MODPOConfig, RewardedSoupsConfig
from sipo_bench_baselines.dpo import DPOMethod, dpo_stages
from sipo_bench_baselines.dpo_lw import DPOLWMethod
from sipo_bench_baselines.mod import MODMethod
from sipo_bench_baselines.modpo import MODPOMethod
from sipo_bench_baselines.rewarded_soups import RewardedSoupsMethod
from sipo_bench_baselines.soups import DPOSoupsMethod
from sipo_bench_baselines.stages import dpo_pairs, lw_pairs

METHODS = {"dpo": DPOMethod, "dpo-soups": DPOSoupsMethod, "mod": MODMethod, "modpo": MODPOMethod,
           "dpo-lw": DPOLWMethod, "rewarded-soups": RewardedSoupsMethod}


class FakeTask(Task):
    name = "fake"

    def __init__(self, names=("helpful", "harmless"), config=None):
        super().__init__(config)
        self.names = list(names)

    def objectives(self):
        return [Objective(n) for n in self.names]

    def scorers(self):
        return [("oracle", {"x": 1})]

    def build_data(self, out, seed, ctx):  # pragma: no cover - never run here
        raise NotImplementedError

    def build_base(self, data, out, seed, ctx):  # pragma: no cover
        raise NotImplementedError


def fit_ctx(names=("helpful", "harmless"), seed=0, options=None, method="dpo"):
    task = FakeTask(names)
    data = Stage(f"data[seed={seed}]", "x:data", {"seed": seed})
    base = Stage(f"base[seed={seed}]", "x:base", {"seed": seed}, {"data": data})
    options = options or {}
    configs = {}

    def config_of(name):
        if name not in configs:
            configs[name] = build(METHODS[name].config_class, options.get(name, {}), f"method_options.{name}")
        return configs[name]

    grid = simplex_grid(len(names), 4 if len(names) == 2 else 2)
    return FitContext(task=task, seed=seed, data=data, base=base, weights=grid, runtime=None, method_name=method,
                      method_configs=config_of)


def fit(method, ctx):
    return METHODS[method](ctx.method_config(method)).fit(ctx)


# --- configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,field,value", [
    (DPOConfig, "beta", 0.0), (DPOConfig, "learning_rate", -1.0), (DPOConfig, "lora_r", 0),
    (DPOConfig, "lora_dropout", 1.0), (DPOConfig, "eval_every", 2.0), (DPOConfig, "grad_accum", 0),
    (DPOConfig, "target_modules", []), (DPOConfig, "max_pairs", 0), (MODPOConfig, "margin_batch_size", 0),
    (MODConfig, "alpha", 0.0), (RewardedSoupsConfig, "num_generations", 1), (RewardedSoupsConfig, "batch_size", 6),
    (RewardedSoupsConfig, "kl_beta", -0.1), (RewardedSoupsConfig, "max_new_tokens", 0),
    (RewardedSoupsConfig, "rm_max_length", 4), (RewardedSoupsConfig, "rm_lora_alpha", 0.0),
])
def test_bad_config_values_name_the_field(cls, field, value):
    with pytest.raises(ConfigError) as e:
        build(cls, {field: value}, "method_options.x")
    msg = str(e.value)
    assert f"`{field}`" in msg or f"`method_options.x.{field}`" in msg or f".{field}`" in msg, msg
    assert "\n" not in msg


def test_load_best_needs_evaluation():
    with pytest.raises(ConfigError, match=r"`load_best`: expected false when eval_every is 0 .*got True"):
        build(DPOConfig, {"eval_every": 0}, "method_options.dpo")
    assert not build(DPOConfig, {"eval_every": 0, "load_best": False}).load_best


def test_config_types_and_rules_are_checked():
    with pytest.raises(ConfigError, match="rule"):
        build(MODConfig, {"rule": "kl"}, "method_options.mod")
    with pytest.raises(ConfigError, match="lr_scheduler"):
        build(DPOConfig, {"lr_scheduler": "cosine_please"}, "method_options.dpo")
    with pytest.raises(ConfigError, match="learning_rate"):
        build(DPOConfig, {"learning_rate": "fast"}, "method_options.dpo")
    assert build(DPOConfig, {"epochs": 1}).epochs == 1.0


def test_paper_defaults():
    c = DPOConfig()
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.beta, c.learning_rate) == (64, 1.0, 0.0, 0.1, 5e-4)
    assert (c.batch_size, c.grad_accum, c.max_length, c.epochs, c.lr_scheduler, c.weight_decay) == (1, 2, 512, 3.0, "cosine", 0.05)
    assert c.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"] and c.eval_every == 0.25 and c.load_best


def test_paper_preset_is_a_valid_run_config():
    from sipo_bench.configs.run_config import load_yaml, make_config

    cfg = make_config(load_yaml(Path(__file__).parents[1] / "presets" / "paper-methods.yaml"))
    for name, opts in cfg.method_options.items():
        c = build(METHODS[name].config_class, opts, f"method_options.{name}")
        if hasattr(c, "lora_r"):
            assert (c.lora_r, c.lora_alpha) == (64, 1.0), name


def test_synthetic_method_defaults_are_valid():
    import yaml

    p = Path(__file__).parents[1] / "plugins" / "sipo_bench_plugins" / "synthetic" / "methods.yaml"
    defaults = yaml.safe_load(p.read_text()) or {}
    for name in METHODS:
        assert name in defaults, f"{name} has no tiny-model defaults in methods.yaml"
        build(METHODS[name].config_class, defaults[name], f"methods.yaml:{name}")


# --- planning -------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("helpful", "harmless"), ("a", "b", "c")])
def test_every_method_shares_the_same_dpo_stages(names):
    ctx = fit_ctx(names)
    keys = {n: s.key for n, s in dpo_stages(ctx).items()}
    assert list(keys) == list(names) and len(set(keys.values())) == len(names)
    for method in ("dpo", "dpo-soups", "mod", "modpo", "dpo-lw"):
        fam = fit(method, fit_ctx(names))
        used = {s.key for w in ctx.weights if (p := fam.policy(w)) is not None
                for s in walk(list(p.stages().values())) if s.kind == "dpo"}
        assert used == set(keys.values()), method
    # the dpo config (not the calling method's) decides the key; a dpo option changes it
    other = dpo_stages(fit_ctx(names, options={"dpo": {"beta": 0.2}}))
    assert all(other[n].key != keys[n] for n in names)
    assert dpo_stages(fit_ctx(names, options={"modpo": {"beta": 0.2}}))[names[0]].key == keys[names[0]]
    # a different seed is different work
    assert dpo_stages(fit_ctx(names, seed=1))[names[0]].key != keys[names[0]]


def test_dpo_family_answers_only_vertices():
    ctx = fit_ctx()
    fam = fit("dpo", ctx)
    st = dpo_stages(ctx)
    assert fam.policy((0.5, 0.5)) is None
    assert [(a.key, w) for a, w in fam.policy((1.0, 0.0)).adapters] == [(st["helpful"].key, 1.0)]
    assert fam.policy((0.0, 1.0)).adapters[0][0].key == st["harmless"].key


def test_soups_and_mod_specs():
    ctx = fit_ctx(("a", "b", "c"))
    st = list(dpo_stages(ctx).values())
    spec = fit("dpo-soups", ctx).policy((0.5, 0.25, 0.25))
    assert spec.combine == "soup" and [(a.key, w) for a, w in spec.adapters] == [(s.key, w) for s, w in zip(st, (0.5, 0.25, 0.25))]
    mctx = fit_ctx(("a", "b", "c"), options={"mod": {"rule": "alpha", "alpha": 0.3}})
    spec = fit("mod", mctx).policy((0.5, 0.25, 0.25))
    assert spec.combine == "fusion" and dict(spec.options) == {"rule": "alpha", "alpha": 0.3}
    assert [w for _, w in spec.adapters] == [0.5, 0.25, 0.25]
    assert fit("mod", fit_ctx()).policy((0.25, 0.75)).options["rule"] == "reverse_kl"


def test_modpo_plans_one_stage_per_weight_and_reuses_dpo_at_vertices():
    ctx = fit_ctx()
    st = dpo_stages(ctx)
    fam = fit("modpo", ctx)
    assert fam.policy((1.0, 0.0)).adapters[0][0].key == st["helpful"].key  # plain DPO on objective 1
    assert fam.policy((0.0, 1.0)).adapters[0][0].key == st["harmless"].key  # w_1 = 0: objective 2's DPO model
    s = fam.policy((0.25, 0.75)).adapters[0][0]
    assert s.kind == "modpo" and s.config["main"] == "helpful" and s.config["others"] == ["harmless"]
    assert (s.config["w_main"], s.config["w_others"]) == (0.25, [0.75])
    assert s.inputs["margin0"].key == st["harmless"].key and s.config["margin_beta"] == 0.1
    assert fam.policy((0.25, 0.75)).adapters[0][0] is s  # planned once per w
    assert fam.policy((0.5, 0.5)).adapters[0][0].key != s.key


def test_modpo_three_objectives_and_main_objective():
    ctx = fit_ctx(("a", "b", "c"))
    st = dpo_stages(ctx)
    fam = fit("modpo", ctx)
    s = fam.policy((0.5, 0.5, 0.0)).adapters[0][0]
    assert s.config["others"] == ["b"] and set(s.inputs) == {"data", "base", "margin0"}  # zero weights need no margin
    s = fam.policy((0.5, 0.25, 0.25)).adapters[0][0]
    assert s.config["others"] == ["b", "c"] and s.config["w_others"] == [0.25, 0.25]
    assert [s.inputs[f"margin{j}"].key for j in range(2)] == [st["b"].key, st["c"].key]
    s = fam.policy((0.0, 0.5, 0.5)).adapters[0][0]  # w_1 = 0 off a vertex: next objective is main
    assert s.config["main"] == "b" and s.config["others"] == ["c"] and s.config["w_main"] == 0.5
    s = fit("modpo", fit_ctx(("a", "b", "c"), options={"modpo": {"main_objective": "c"}})).policy((0.5, 0.25, 0.25)).adapters[0][0]
    assert s.config["main"] == "c" and s.config["others"] == ["a", "b"] and s.config["w_others"] == [0.5, 0.25]
    with pytest.raises(ConfigError, match="main_objective"):
        fit("modpo", fit_ctx(options={"modpo": {"main_objective": "nope"}}))


def test_dpo_lw_plans_per_weight():
    ctx = fit_ctx(("a", "b", "c"))
    st = dpo_stages(ctx)
    fam = fit("dpo-lw", ctx)
    assert fam.policy((0.0, 1.0, 0.0)).adapters[0][0].key == st["b"].key
    s = fam.policy((0.5, 0.5, 0.0)).adapters[0][0]
    assert s.kind == "dpo-lw" and s.config["w"] == [0.5, 0.5, 0.0] and s.config["objectives"] == ["a", "b", "c"]


def test_rewarded_soups_one_rl_stage_per_objective():
    ctx = fit_ctx(("a", "b", "c"))
    spec = fit("rewarded-soups", ctx).policy((0.5, 0.25, 0.25))
    assert spec.combine == "soup" and [a.config["objective"] for a, _ in spec.adapters] == ["a", "b", "c"]
    assert all(a.kind == "rl" and a.config["scorers"] == [["oracle", {"x": 1}]] for a, _ in spec.adapters)


def test_rewarded_soups_learns_its_reward_models_from_the_pairs_by_default():
    ctx = fit_ctx(("a", "b"))
    method = RewardedSoupsMethod(ctx.method_config("rewarded-soups"))
    fam = method.fit(ctx)
    extra = fam.extra_stages()
    for o in ("a", "b"):
        rl, rm = extra[f"rl_{o}"], extra[f"reward_model_{o}"]
        assert rl.config["reward_source"] == "learned" and rl.inputs["reward_model"] is rm
        assert rm.kind == "reward-model" and rm.config["objective"] == o and set(rm.inputs) == {"data", "base"}
        assert rm.inputs["data"] is ctx.data and rm.config["seed"] == 0
    assert [a.key for a, _ in fam.policy((0.5, 0.5)).adapters] == [extra["rl_a"].key, extra["rl_b"].key]
    assert method.trained_on(ctx.task) == "learned RM (from pair labels)"
    assert method.variant() == "RLOO vs learned RM: 2 prompts x 4 samples per step, 1 epoch(s) over the training prompts"
    # the reward model's key holds only its own options; the RL stage's only the RL options
    def keys(options):
        f = fit("rewarded-soups", fit_ctx(("a", "b"), options={"rewarded-soups": options})).extra_stages()
        return f["reward_model_a"].key, f["rl_a"].key
    rm0, rl0 = keys({})
    rm1, rl1 = keys({"learning_rate": 1e-3})
    assert rm1 == rm0 and rl1 != rl0
    rm2, rl2 = keys({"rm_epochs": 2})
    assert rm2 != rm0 and rl2 != rl0  # a new reward model is new RL work
    assert "rm_epochs" not in fit("rewarded-soups", fit_ctx()).extra_stages()["rl_helpful"].config["rl"]


def test_rewarded_soups_against_the_judge_only_when_asked():
    ctx = fit_ctx(options={"rewarded-soups": {"reward_source": "judge", "max_steps": 16, "batch_size": 32}})
    method = RewardedSoupsMethod(ctx.method_config("rewarded-soups"))
    extra = method.fit(ctx).extra_stages()
    assert set(extra) == {"rl_helpful", "rl_harmless"}
    assert all("reward_model" not in s.inputs and s.config["reward_source"] == "judge" for s in extra.values())
    assert method.trained_on(ctx.task) == "evaluation judge"
    assert method.variant() == "RLOO vs judge: 8 prompts x 4 samples x 16 steps"
    assert ctx.method_config("rewarded-soups").budget() == {"prompts_per_step": 8, "samples_per_prompt": 4,
                                                            "steps": 16, "rollouts": 512}
    with pytest.raises(ConfigError, match=r"`method_options.x.reward_source`: expected one of 'learned', 'judge'"):
        build(RewardedSoupsConfig, {"reward_source": "oracle"}, "method_options.x")
    for f in ("rm_learning_rate", "rm_epochs", "rm_batch_size", "rm_lora_r", "rm_max_pairs"):
        with pytest.raises(ConfigError, match=f"`{f}`"):
            build(RewardedSoupsConfig, {f: 0}, "method_options.x")


def test_pair_methods_say_they_were_trained_on_pair_labels():
    ctx = fit_ctx()
    for name in ("dpo", "dpo-soups", "mod", "modpo", "dpo-lw"):
        m = METHODS[name](ctx.method_config(name))
        assert m.trained_on(ctx.task) == "pair labels" and m.variant() is None, name


# --- pairs ----------------------------------------------------------------------------------

ROWS = [
    {"prompt": "p0", "responses": [" x", " y"], "labels": {"a": 0, "b": 1}},
    {"prompt": "p1", "responses": [" x", " y"], "labels": {"a": None, "b": 0}},
    {"prompt": "p2", "responses": [" x", " y"], "labels": {"a": 1, "b": None}},
    {"prompt": "p3", "responses": [" x", " y"], "labels": {"a": None, "b": None}},
]


def test_dpo_pairs_orient_by_the_objective_and_drop_ties():
    fmt = "<{}>".format
    assert dpo_pairs(ROWS, "a", fmt) == [{"prompt": "<p0>", "chosen": " x", "rejected": " y"},
                                         {"prompt": "<p2>", "chosen": " y", "rejected": " x"}]
    assert [p["prompt"] for p in dpo_pairs(ROWS, "b", fmt)] == ["<p0>", "<p1>"]
    assert dpo_pairs(ROWS, "b", fmt)[0]["chosen"] == " y"
    with pytest.raises(KeyError, match="c"):
        dpo_pairs(ROWS, "c", fmt)


def test_lw_pairs_signs_and_all_tie_rows():
    got = lw_pairs(ROWS, ["a", "b"], [0.5, 0.5], str)
    assert [(p["prompt"], p["signs"]) for p in got] == [("p0", [1.0, -1.0]), ("p1", [0.0, 1.0]), ("p2", [-1.0, 0.0])]
    assert all(p["chosen"] == " x" for p in got)
    # with w_b = 0 a pair labelled only by b carries no loss and is dropped
    assert [p["prompt"] for p in lw_pairs(ROWS, ["a", "b"], [1.0, 0.0], str)] == ["p0", "p2"]
