"""Captioning models, their text tokenizers and image encoders; each model one file, registered by name."""

# Modules whose @register_* decorators fill captionkit.registry; imported on first registry lookup.
BUILTIN_MODULES = [
    "captionkit.data.text",
    "captionkit.models.hf",
    "captionkit.models.clipcap",
    "captionkit.models.vgg",
    "captionkit.models.show_tell",
    "captionkit.models.show_attend_tell",
]
