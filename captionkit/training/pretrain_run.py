"""What both encoder pretrainings (contrastive CLIP, classifier) do around the engine: a finished OUT is reused,
an interrupted one resumes from its last checkpoint, and one started with other settings is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from captionkit.config import write_resolved_config
from captionkit.errors import ConfigError
from captionkit.training import checkpoint as ckpt
from captionkit.training.config import TrainConfig
from captionkit.training.engine import Engine, Job

log = logging.getLogger(__name__)

DONE_MARKER = "pretrain_done.json"  # written last, with the final evaluation: OUT is finished
CONFIG_NAME = "pretrain_config.json"  # the settings OUT was started with (written when training starts)


def same_settings_or_refuse(out: Path, settings: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
    """Refuse to reuse or resume an OUT that was started with another dataset or other settings. `defaults`: a
    setting added in a later version and missing from OUT's file counts as its default."""
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(settings))  # tuples and lists alike, as JSON spells them
    defaults = json.loads(json.dumps(defaults or {}))
    changed = sorted(k for k in {*before, *now} if before.get(k, defaults.get(k)) != now.get(k))
    if changed:
        key = changed[0]
        raise ConfigError(
            f"{out} was trained with {key}={before.get(key)!r}, now {key}={now.get(key)!r} "
            f"({len(changed)} setting(s) differ: {', '.join(changed)}); choose another output directory, or "
            f"delete {out} to train it again"
        )


class PretrainJob(Job):
    """A pretraining job writing into `out`, started with `settings` (JSON data)."""

    out: Path
    settings: dict[str, Any]
    defaults: dict[str, Any] | None = None  # each setting's default (see same_settings_or_refuse)

    def started(self) -> None:
        write_resolved_config(self.settings, self.out, CONFIG_NAME)


def run_pretraining(job: PretrainJob, config: TrainConfig, what: str, progress: bool = True) -> bool:
    """Train `job` into its OUT unless OUT is finished with the same settings; False when it was reused."""
    same_settings_or_refuse(job.out, job.settings, job.defaults)
    if (job.out / DONE_MARKER).is_file():
        log.info("%s: %s is already trained, reusing it", what, job.out)
        return False
    Engine(job, config, job.out, progress).run(resume=bool(ckpt.checkpoint_dirs(job.out)))
    return True


def mark_done(out: Path, record: dict[str, Any]) -> None:
    (out / DONE_MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")
