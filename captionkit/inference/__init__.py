"""Using a trained model: the Captioner (`captionkit.load`), captioning files in batches, web-scale bulk captioning,
attention maps and CLIP reranking. May import data, models, decoding and the foundation, never training,
evaluation or applications."""
