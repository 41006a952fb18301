"""Model-agnostic training on Hugging Face accelerate: `train(run_config) -> RUN_DIR/model`.

May import evaluation (dev metrics), inference, data, decoding, models and the foundation; never report (its
sibling layer), demo, serve or cli. Needs the `train` extra (accelerate, tensorboard)."""

from captionkit.training.config import EvalConfig, RunConfig, TrainConfig, load_run_config


def train(config: RunConfig, resume: bool = False, progress: bool = True):  # noqa: ANN201 - accelerate loads lazily
    """Train a model as `config` describes; returns the best model directory (RUN_DIR/model)."""
    from captionkit.training.caption_job import train as run

    return run(config, resume=resume, progress=progress)


__all__ = ["EvalConfig", "RunConfig", "TrainConfig", "load_run_config", "train"]
