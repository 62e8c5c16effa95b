"""Run under ``accelerate launch --num_processes 2`` by tests/test_trl_integration.py.

One group of 4 completions split over two processes (2 rows each): the acpo credits must be
normalised over the whole group (additive composition, so they show even where the rewards tie).
Rank 0 writes the largest difference between the advantages TRL's loss saw (every process's rows)
and ``acpo.explain_batch`` on the same texts.
"""

import copy
import json
import sys
from pathlib import Path

import torch
from accelerate.utils import gather_object
from datasets import Dataset

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]  # conftest's tiny models, and acpo from this checkout
from conftest import char_tokenizer, tiny_llama  # noqa: E402

import acpo  # noqa: E402
from acpo.integrations.trl import StepCreditGRPOConfig, StepCreditGRPOTrainer  # noqa: E402


def digit_share(completions, **kwargs):
    return [sum(ch.isdigit() for ch in text) / max(1, len(text)) for text in completions]


def main(out_dir: Path) -> None:
    tok = char_tokenizer()
    policy = tiny_llama(len(tok))
    before = copy.deepcopy(policy)  # the credit is computed before the optimizer step
    args = StepCreditGRPOConfig(
        output_dir=str(out_dir), report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, max_steps=1,
        per_device_train_batch_size=2, num_generations=4, max_completion_length=8, seed=0, learning_rate=1e-2,
        bf16=False, activation_checkpointing=False, generation_kwargs={"suppress_tokens": [0, 1, 2, 3]},
        credit_method="info_gain", credit_segmentation="fixed-3", credit_probe="#### ", credit_composition="additive")
    dataset = Dataset.from_dict({"prompt": ["Q: 1+2=?\n"] * 4, "answer": ["3"] * 4})
    trainer = StepCreditGRPOTrainer(model=policy, reward_funcs=digit_share, args=args, processing_class=tok,
                                    train_dataset=dataset)
    seen = []
    loss = trainer._compute_loss

    def spy(model, inputs):
        for i in range(len(inputs["advantages"])):
            n = int(inputs["completion_mask"][i].sum())
            seen.append((tok.decode(inputs["prompt_ids"][i][inputs["prompt_mask"][i].bool()]),
                         tok.decode(inputs["completion_ids"][i][:n]), inputs["advantages"][i][:n].tolist()))
        return loss(model, inputs)

    trainer._compute_loss = spy
    trainer.train()
    rows = gather_object(seen)
    if trainer.accelerator.is_main_process:
        prompts, completions, advantages = zip(*rows)
        traces = acpo.explain_batch(before, tok, list(prompts), list(completions), method="info_gain",
                                    segmentation="fixed-3", probe="#### ", answers=["3"] * len(rows),
                                    rewards=digit_share(completions), chat_template=False,
                                    advantage_config=acpo.AdvantageConfig(composition="additive"))
        diff = max(float((torch.tensor(a) - t.token_advantages["info_gain"]).abs().max())
                   for a, t in zip(advantages, traces))
        result = {"rows": len(rows), "processes": trainer.accelerator.num_processes, "max_abs_diff": diff,
                  "max_abs_advantage": max(abs(x) for a in advantages for x in a)}
        (out_dir / "result.json").write_text(json.dumps(result))
    trainer.accelerator.wait_for_everyone()  # both processes end together (see exit_process below)


if __name__ == "__main__":  # only under accelerate launch (pytest's doctest collection imports this file)
    main(Path(sys.argv[1]))
    from acpo.distributed import exit_process

    exit_process(0)  # gloo's threads outlive DDP's process group: skip the interpreter teardown they can abort
