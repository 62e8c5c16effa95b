"""Does an RL update carry over? Reward on the problems trained on vs on held-out problems.

A diagnostic for the question "why does held-out pass@1 not move": train ``grpo`` on a
small pool (``--pool-size`` problems, so each is seen many times) and every 10 steps
measure the sampled reward (T=1, ``--samples`` per problem, a fixed seed) on that pool
and on ``--heldout`` held-out problems. If the pool's reward rises and the held-out
reward does not, the update is sound and what it learns is specific to the problems.

    python bench/rl_fit.py --lr 1e-4 --steps 40 --pool-size 64
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acpo.config import make_config  # noqa: E402
from acpo.tasks import get_task, heldout_problems  # noqa: E402
from acpo.trainer import Trainer  # noqa: E402


def sampled_reward(trainer: Trainer, problems, n: int, seed: int = 123) -> float:
    """Mean reward of ``n`` T=1 samples per problem, on its own RNG state."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    samples = trainer.engine.generate(trainer.prompt_ids(problems), n=n)
    torch.set_rng_state(state)
    owners = [problems[i // n] for i in range(len(samples))]
    return sum(get_task(p.family).check(p, s.text).answer_correct for p, s in zip(owners, samples)) / len(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", "--method", dest="recipe", default="grpo", help="training recipe (--method: old name)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--pool-size", type=int, default=64, help="problems generated for the pool (the mix keeps some)")
    ap.add_argument("--heldout", type=int, default=64, help="held-out problems measured")
    ap.add_argument("--samples", type=int, default=8, help="samples per problem for each measurement")
    args = ap.parse_args()
    cfg = make_config({"recipe": args.recipe, "lr": args.lr, "pool_size": args.pool_size, "eval_problems": 8,
                       "trace_problems": 0, "output_dir": tempfile.mkdtemp()})
    trainer = Trainer(cfg)
    held = heldout_problems(args.heldout)
    print(f"{args.recipe} lr {args.lr}: pool of {len(trainer.pool)} problems, {len(held)} held-out")
    print("| step | batch reward | pool reward | held-out reward |\n| --- | --- | --- | --- |")
    print(f"| 0 | | {sampled_reward(trainer, trainer.pool, args.samples):.3f} | "
          f"{sampled_reward(trainer, held, args.samples):.3f} |", flush=True)
    for step in range(1, args.steps + 1):
        metrics = trainer.step()  # the loop's own step: rollout, reward, credit, update, curriculum
        if step % 10 == 0 or step == args.steps:
            print(f"| {step} | {metrics['reward']:.2f} | {sampled_reward(trainer, trainer.pool, args.samples):.3f} | "
                  f"{sampled_reward(trainer, held, args.samples):.3f} |", flush=True)


if __name__ == "__main__":
    main()
