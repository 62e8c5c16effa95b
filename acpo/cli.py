"""Command-line entry points: ``acpo-train`` (= ``python train.py``) and ``acpo-app`` (= ``python app/main.py``).

``run`` picks the training loop a config names: ours (``acpo.trainer``) or TRL's (``acpo.integrations.trl``).
"""

from __future__ import annotations

import sys


def run(cfg) -> dict:
    """Train ``cfg`` (an ``acpo.config.TrainConfig``) with the loop of ``--backend``; the summary ``train.py`` prints."""
    if cfg.backend == "trl":  # TRL's GRPOTrainer with our step credit
        from acpo.integrations.trl import run_trl

        return run_trl(cfg)
    from acpo.trainer import run as run_ours

    return run_ours(cfg)


def train_main(argv: list[str] | None = None, prog: str = "acpo-train") -> int:
    """Run one training run from command-line flags; the exit status (0 done, 2 bad input or failure, 130 Ctrl-C).

    ``prog`` is the command the messages name (``train.py`` calls this too).
    """
    import warnings

    from acpo.config import ConfigWarning, check_environment, parse_args
    from acpo.models import ModelLoadError
    from acpo.runs import RunFinished

    shown = warnings.showwarning

    def one_line(message, category, *args, **kwargs):
        if issubclass(category, ConfigWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = one_line
    try:
        cfg = parse_args(argv)
        check_environment(cfg)
        summary = run(cfg)
    except RunFinished as done:  # nothing to do is not an error
        print(f"{prog}: {done}")
        return 0
    except (ValueError, ModelLoadError, RuntimeError, OSError) as err:  # NaN loss, disk full, bad input, ...
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print(f"\n{prog}: interrupted; the last checkpoint in the run folder is intact (--resume it)", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
    if not summary["is_main"]:
        return 0
    if summary["stopped_by"]:  # Ctrl-C / SIGTERM: the step finished and a checkpoint was written
        print(f"{prog}: stopped by {summary['stopped_by']} after step {summary['steps']}; "
              f"checkpoint: {summary['checkpoint']}\nresume with: {summary['resume_command']}")
        return 0
    print(
        f"held-out pass@1 greedy {summary['start_pass@1']:.3f} -> {summary['end_pass@1']:.3f}, "
        f"sampled {summary['start_pass@1_sampled']:.3f} -> {summary['end_pass@1_sampled']:.3f} "
        f"in {summary['wall_s'] / 60:.1f} min ({summary['steps']} steps); run folder: {summary['run_dir']}"
    )
    return 0


def app_main(argv: list[str] | None = None) -> None:
    """Start the explorer app; needs the ``[app]`` extra (gradio, plotly)."""
    try:
        from acpo.app.main import main
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in ("gradio", "plotly"):
            sys.exit(f"acpo-app: {err.name} is not installed; install acpo with the app's extra "
                     "(pip install '.[app]' in the checkout), or gradio and plotly")
        raise
    main(argv)
