"""The named run presets (`<name>.json`, `hf/` model configs) that `captionkit models list` shows. Data only:
imports nothing."""
