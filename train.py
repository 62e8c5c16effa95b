"""Fine-tune a causal LM with step-level credit: `python train.py --help` lists every option.

    python train.py                                  # demo policy, acpo, synthetic tasks, CPU
    python train.py --method grpo --steps 100
    python train.py --config configs/gpu_example.yaml
    accelerate launch train.py --config configs/x.yaml

The same command is installed as `acpo-train` (`pip install .`); it lives in `acpo.cli.train_main`.
"""

import sys

from acpo.cli import train_main


def main(argv=None) -> int:
    return train_main(argv, prog="train.py")


if __name__ == "__main__":
    sys.exit(main())
