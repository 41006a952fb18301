"""Captioning models, their text tokenizers and image encoders; each model one file, registered by name
(`captionkit.registry.BUILTIN_MODULES`). May import the foundation (config, registry, errors) and the packaged
weights, never data, decoding or anything above them."""
