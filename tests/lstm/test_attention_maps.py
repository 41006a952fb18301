"""Attention heat maps: one PNG with the image and one panel per word, the heat where the weights are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lstm_helpers import features_for, merge_model, sat_model
from PIL import Image

from captionkit.errors import ConfigError
from captionkit.inference.attention import (
    COLUMNS,
    LABEL_PX,
    PANEL_PX,
    attention_map_size,
    caption_with_attention,
    encoder_view,
    render_attention_map,
)
from captionkit.inference.captioner import Captioner
from captionkit.models.base import build_model
from captionkit.models.show_attend_tell import attention_for
from captionkit.models.tokenizers import WordVocab


def grey_image() -> Image.Image:
    return Image.new("RGB", (300, 200), (128, 128, 128))


@pytest.mark.parametrize("words", [["a", "dog"], ["a", "red", "circle", "above", "a", "blue", "square"]])
def test_one_panel_per_word_plus_the_image(tmp_path: Path, words):
    weights = torch.softmax(torch.randn(len(words), 196), dim=-1)
    out = render_attention_map(grey_image(), words, weights, tmp_path / "maps" / "att.png")
    panels = len(words) + 1
    cols = min(COLUMNS, panels)
    rows = -(-panels // cols)
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.size == attention_map_size(len(words)) == (cols * PANEL_PX, rows * (PANEL_PX + LABEL_PX))


def test_heat_sits_where_the_weight_is(tmp_path: Path):
    weights = torch.zeros(2, 4)  # a 2 x 2 grid; word 0 looks top-left, word 1 bottom-right
    weights[0, 0] = 1.0
    weights[1, 3] = 1.0
    out = render_attention_map(grey_image(), ["top", "bottom"], weights, tmp_path / "att.png", grid=(2, 2))
    pixels = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32)
    first, second = pixels[:PANEL_PX, PANEL_PX : 2 * PANEL_PX], pixels[:PANEL_PX, 2 * PANEL_PX : 3 * PANEL_PX]
    q = PANEL_PX // 4
    # 'jet' is red at the maximum and dark blue at 0: red minus blue is high only under the attention
    heat = lambda panel, y, x: panel[y, x, 0] - panel[y, x, 2]  # noqa: E731
    assert heat(first, q, q) > 50 > heat(first, 3 * q, 3 * q)
    assert heat(second, 3 * q, 3 * q) > 50 > heat(second, q, q)
    plain = pixels[:PANEL_PX, :PANEL_PX]
    assert np.abs(plain - 128).max() <= 1  # the first panel is the image itself


def test_weights_that_do_not_fit_the_words_or_grid_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match=r"expected \(2, 196\)"):
        render_attention_map(grey_image(), ["a", "dog"], torch.ones(3, 196) / 196, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"expected \(2, 49\)"):
        render_attention_map(grey_image(), ["a", "dog"], torch.ones(2, 196) / 196, tmp_path / "x.png", grid=(7, 7))


def test_model_attention_renders(tmp_path: Path):
    torch.manual_seed(0)
    model = sat_model().eval()  # a 3 x 3 grid
    weights = attention_for(model, features_for(model, 1), [[5, 6, 7]])[0]
    out = render_attention_map(grey_image(), ["w5", "w6", "w7"], weights, tmp_path / "att.png")  # 3 x 3 inferred
    assert Image.open(out).size == attention_map_size(3)


def test_the_panels_show_the_centre_crop_the_encoder_saw():
    image = Image.new("RGB", (320, 200), (0, 0, 255))
    image.paste((255, 0, 0), (60, 0, 260, 200))  # red centre square with blue bands at the sides
    view = encoder_view(image, crop_fraction=0.875)
    assert view.size == (175, 175)
    assert np.asarray(view)[..., 0].min() == 255  # only the red centre: the side bands are cut off


def test_caption_with_attention_gives_one_weight_row_per_word(tmp_path: Path):
    torch.manual_seed(0)
    vocab = WordVocab.build(["a red circle", "a blue square"])
    model = build_model(
        {
            "type": "show-attend-tell",
            "vocab_size": vocab.vocab_size,
            "feature_dim": 64,
            "embed_dim": 8,
            "attention_dim": 8,
            "hidden_dim": 8,
            "dropout": 0.0,
            "finetune_encoder": "vgg16-small:conv5_3",
            "finetune_blocks": 0,
        }
    )
    captioner = Captioner(model, vocab, device="cpu")
    image = Image.new("RGB", (150, 120), (200, 30, 30))
    words, weights = caption_with_attention(captioner, image, max_new_tokens=4, min_new_tokens=4)
    assert len(words) == 4 and all(w in vocab.itos for w in words)
    assert weights.shape == (4, 49)  # vgg16-small at 112 px: a 7 x 7 grid
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    out = render_attention_map(image, words, weights, tmp_path / "att.png")
    assert Image.open(out).size == attention_map_size(4)
    with pytest.raises(ConfigError, match="show-attend-tell"):
        caption_with_attention(Captioner(merge_model(), vocab, device="cpu"), image)
