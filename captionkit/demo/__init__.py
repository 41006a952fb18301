"""The demo: the main job on the built-in synthetic data (`pipeline`) and the recipe of its shipped encoders
(`encoders`). An application layer: it may import training, evaluation, report and everything below them."""

from captionkit.demo.pipeline import DEMO_MODELS, DemoConfig, Steps, format_table, run_demo, run_names

__all__ = ["DEMO_MODELS", "DemoConfig", "Steps", "format_table", "run_demo", "run_names"]
