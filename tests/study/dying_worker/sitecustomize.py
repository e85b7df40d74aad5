"""A worker that dies mid-run, for tests/study/test_executors.py: a Python process started with this folder first on
PYTHONPATH and ``LPFT_TEST_EXIT_AFTER_EPOCH`` naming a marker path wraps lpft.runs' epoch-end hook so that the first
process to finish an epoch creates the marker and exits at once (``os._exit``: no cleanup, like a killed worker);
later processes see the marker and go on. Python imports ``sitecustomize`` at start-up, so Ray's worker processes,
which get PYTHONPATH and the LPFT_ variables from lpft's executor, install it before any job."""

import os

MARKER = os.environ.get("LPFT_TEST_EXIT_AFTER_EPOCH")

if MARKER:
    import lpft.runs

    last_epoch_features = lpft.runs._last_epoch_features

    def dying(cfg, test, folder):
        hook = last_epoch_features(cfg, test, folder)

        def on_epoch_end(epoch, clf):
            hook(epoch, clf)
            try:
                with open(MARKER, "x") as f:
                    f.write(f"exited after epoch {epoch}\n")
            except FileExistsError:
                return
            os._exit(17)

        return on_epoch_end

    lpft.runs._last_epoch_features = dying
