"""The acpo explorer: which reasoning steps earned or lost the reward.

    python app/main.py                      # http://127.0.0.1:7860
    python app/main.py --host 0.0.0.0 --port 7861 --allow /data/runs
    python app/main.py --share
    acpo-app --port 7861                    # the same, installed (`pip install .[app]`)

Four tabs (Explore a trace, Compare checkpoints, Runs, Batch and export); every
button is also a named API endpoint (``gradio_client``). Every number shown
comes from ``acpo`` (``explain``, ``explain_batch``, ``Trace.to_frame``, the task
checkers). Where things live: ``app/layout.py`` (the tabs), one module of
callbacks per tab (``app/explore.py``, ``app/compare.py``, ``app/runs_tab.py``,
``app/batch.py``; ``app/shared.py`` for what they share, ``app/callbacks.py``
joins them), ``app/models.py`` (the model cache), ``app/views.py`` (tables and
figures), ``app/loaders.py`` (files and allowed paths); heatmaps are drawn by
the core (``acpo.render``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if not __package__:  # `python app/main.py`: find acpo and run as the package `app` (installed, it is `acpo.app`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import app  # noqa: E402, F401

    __package__ = "app"

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from acpo.answers import start_math_workers  # noqa: E402
from acpo.models import DEMO_POLICY  # noqa: E402

from .callbacks import Explorer  # noqa: E402
from .layout import CSS, build_app  # noqa: E402
from .limits import RequestLimits  # noqa: E402
from .loaders import ASSETS, MAX_FILE_MB, REPO_ROOT  # noqa: E402


def main(argv=None) -> None:
    prog = "python app/main.py" if __package__ == "app" else "acpo-app"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for every interface; default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default: %(default)s)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--allow", action="append", default=[], metavar="DIR",
                        help="another folder the app may read runs, checkpoints and files from (repeatable); "
                             "assets/ and runs/ are always allowed")
    parser.add_argument("--model", default=DEMO_POLICY, help="default model (default: the bundled demo policy)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--allow-remote-code", action="store_true",
                        help="let users load models that run their own Python (trust_remote_code); off by default, "
                             "and never on a public server: anyone could point the app at a repository of theirs")
    limits = RequestLimits()
    parser.add_argument("--max-request-seconds", type=float, default=limits.seconds,
                        help="refuse a resampling credit (mc_reset) estimated to take longer (default: %(default)s)")
    parser.add_argument("--max-mc-samples", type=int, default=limits.mc_samples,
                        help="most continuations per step boundary a caller may ask for (default: %(default)s)")
    parser.add_argument("--max-mc-tokens", type=int, default=limits.mc_tokens,
                        help="most tokens per continuation a caller may ask for (default: %(default)s)")
    args = parser.parse_args(argv)
    for flag in ("max_request_seconds", "max_mc_samples", "max_mc_tokens"):
        if not getattr(args, flag) > 0:
            parser.error(f"--{flag.replace('_', '-')} must be above 0; got {getattr(args, flag)}")
    limits = RequestLimits(seconds=args.max_request_seconds, mc_samples=args.max_mc_samples,
                           mc_tokens=args.max_mc_tokens)
    if args.threads:
        torch.set_num_threads(args.threads)
    roots = [ASSETS, REPO_ROOT / "runs", *args.allow]
    if Path(args.model).exists():  # the operator named it at launch: it may be read
        roots.append(args.model)
    threading.Thread(target=start_math_workers, daemon=True).start()  # answers are checked in worker processes
    explorer = Explorer(roots, default_model=args.model, allow_remote_code=args.allow_remote_code,
                        limits=limits)
    started = time.perf_counter()
    demo = build_app(explorer)
    print(f"[acpo app] ready in {time.perf_counter() - started:.1f} s; reading from: "
          + ", ".join(str(r) for r in explorer.guard.roots))
    demo.queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, share=args.share, show_error=True,
        max_file_size=f"{MAX_FILE_MB}mb", css=CSS, theme=gr.themes.Soft(),
    )


if __name__ == "__main__":
    main()
