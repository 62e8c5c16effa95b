"""Fine-tune a causal LM with step-level credit: `python train.py --help` lists every option.

    python train.py                                  # demo policy, acpo, synthetic tasks, CPU
    python train.py --method grpo --steps 100
    python train.py --config configs/gpu_example.yaml
    accelerate launch train.py --config configs/x.yaml
"""

import sys



def main(argv=None) -> int:
    from acpo.config import parse_args
    from acpo.models import ModelLoadError
    from acpo.runs import RunFinished

    try:
        cfg = parse_args(argv)
        from acpo.trainer import run

        summary = run(cfg)
    except RunFinished as done:  # nothing to do is not an error
        print(f"train.py: {done}")
        return 0
    except (ValueError, ModelLoadError, RuntimeError, OSError) as err:  # NaN loss, disk full, bad input, ...
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print("\ntrain.py: interrupted; the last checkpoint in the run folder is intact (--resume it)", file=sys.stderr)
        return 130
    if not summary["is_main"]:
        return 0
    if summary["stopped_by"]:  # Ctrl-C / SIGTERM: the step finished and a checkpoint was written
        print(f"train.py: stopped by {summary['stopped_by']} after step {summary['steps']}; "
              f"checkpoint: {summary['checkpoint']}\nresume with: {summary['resume_command']}")
        return 0
    print(
        f"held-out pass@1 greedy {summary['start_pass@1']:.3f} -> {summary['end_pass@1']:.3f}, "
        f"sampled {summary['start_pass@1_sampled']:.3f} -> {summary['end_pass@1_sampled']:.3f} "
        f"in {summary['wall_s'] / 60:.1f} min ({summary['steps']} steps); run folder: {summary['run_dir']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
