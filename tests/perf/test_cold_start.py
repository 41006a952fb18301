"""Cold start: a model directory's GPT-2 is built without the random initialisation its weights replace, and the
loaded model is the same as one built and initialised the slow way."""

from __future__ import annotations

import torch

import captionkit
from captionkit.models import hf
from captionkit.models.model_dir import load_model_dir

SMALL_GPT2 = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 32}


def test_weights_follow_skips_the_init_and_keeps_the_lm_head_tied():
    seeded = hf.load_gpt2("captionkit:tiny-gpt2", pretrained=False, config=SMALL_GPT2)
    with hf.weights_follow():
        fast = hf.load_gpt2("captionkit:tiny-gpt2", pretrained=False, config=SMALL_GPT2)
    assert fast.lm_head.weight is fast.transformer.wte.weight  # tied, as transformers' own init leaves it
    assert not torch.equal(fast.transformer.h[0].mlp.c_fc.weight, seeded.transformer.h[0].mlp.c_fc.weight)
    again = hf.load_gpt2("captionkit:tiny-gpt2", pretrained=False, config=SMALL_GPT2)  # outside: seeded again
    assert torch.equal(again.transformer.h[0].mlp.c_fc.weight, seeded.transformer.h[0].mlp.c_fc.weight)


def test_loading_without_the_init_gives_the_same_model(clipcap_dir):
    slow = load_model_dir(clipcap_dir).model  # initialised, then overwritten by the safetensors
    fast = captionkit.load(str(clipcap_dir), device="cpu").model
    assert fast.gpt.lm_head.weight is fast.gpt.transformer.wte.weight
    slow_state, fast_state = slow.state_dict(), fast.state_dict()
    assert slow_state.keys() == fast_state.keys()
    assert all(torch.equal(slow_state[k], fast_state[k]) for k in slow_state)
