"""How large is ACPO's entropy bonus next to the policy-gradient term? Gradient norms on real batches.

Builds the trainer of `python train.py [flags]`, samples and scores a few batches as its first step would, and
for each prints the norm of the gradient (over every trained weight) of the clipped policy-gradient loss and of
the entropy bonus at beta = 1 (`acpo.regulation.entropy_weights` on the top `entropy_top_frac` steps by
|normalised credit|, the loss's aggregation), the entropy of the whole batch and of the chosen steps, and the
beta at which the bonus's gradient would be 10% of the policy gradient's. Nothing is trained.

    python bench/entropy_gradient.py                  # the demo policy, the acpo recipe, 3 batches
    python bench/entropy_gradient.py --batches 5 -- --lr 3e-4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=3, help="batches sampled and measured")
    ap.add_argument("train_flags", nargs="*", help="train.py flags after --, e.g. -- --recipe acpo --seed 1")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from acpo.config import parse_args
    from acpo.loss import aggregate, policy_loss
    from acpo.regulation import entropy_weights
    from acpo.stats import completion_stats
    from acpo.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_args(["--output-dir", tmp, "--run-name", "probe", "--eval-problems", "8", "--trace-problems",
                          "0", "--threads", "1", *args.train_flags])
        trainer = Trainer(cfg)
        params = [p for p in trainer.model.parameters() if p.requires_grad]

        def grad_norm(loss: torch.Tensor) -> float:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))

        print(f"{cfg.model}, recipe {cfg.recipe}, credit {trainer.credit_name}, top fraction "
              f"{cfg.entropy_top_frac}, aggregation {cfg.aggregation}, seed {cfg.seed}\n")
        print("| batch | entropy, all tokens | entropy, chosen steps | share of tokens chosen | PG loss | "
              "|grad PG| | |grad bonus| at beta 1 | beta for 10% of |grad PG| |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for i in range(args.batches):
            problems, samples, rewards = trainer.sample_groups(cfg.prompts_per_step)
            scored = trainer.score(problems, samples, rewards)
            b, mask = scored.batch, scored.batch.completion_mask
            lp, ent = completion_stats(trainer.model, b.prompt_ids, b.prompt_mask, b.completion_ids, mask)
            pg, _ = policy_loss(lp, lp.detach(), scored.token_adv, mask, aggregation=cfg.aggregation,
                                max_len=cfg.max_new_tokens)
            weight = entropy_weights(1.0, scored.step_credits, b.group_ids, b.step_index, mask, cfg.entropy_top_frac)
            bonus = aggregate(-weight * ent, mask, cfg.aggregation, cfg.max_new_tokens)
            g_pg, g_bonus = grad_norm(pg), grad_norm(bonus)
            real, chosen, ent, pg = mask.bool(), (weight > 0) & mask.bool(), ent.detach(), pg.detach()
            print(f"| {i} | {float(ent[real].mean()):.3f} | {float(ent[chosen].mean()):.3f} | "
                  f"{float(chosen.sum() / real.sum()):.2f} | {float(pg):.3f} | {g_pg:.3f} | {g_bonus:.3f} | "
                  f"{0.1 * g_pg / g_bonus:.2f} |")
        if trainer.lock is not None:  # the run folder's lock, held by a Trainer until train() ends
            trainer.lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
