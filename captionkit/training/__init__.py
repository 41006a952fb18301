"""Model-agnostic training on Hugging Face accelerate: `train(run_config) -> RUN_DIR/model`.

May import evaluation (dev metrics), inference, data, decoding, models and the foundation; never report (its
sibling layer), demo, serve or cli. Needs the `train` extra (accelerate, tensorboard)."""

from captionkit.training.config import EvalConfig, RunConfig, TrainConfig, load_run_config


def train(config: RunConfig, resume: bool = False):  # noqa: ANN201 - imported lazily: accelerate is heavy
    """Train a model as `config` describes; returns the best model directory (RUN_DIR/model)."""
    from captionkit.training.engine import train as run

    return run(config, resume=resume)


__all__ = ["EvalConfig", "RunConfig", "TrainConfig", "load_run_config", "train"]
