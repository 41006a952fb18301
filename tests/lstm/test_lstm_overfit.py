"""Both LSTM captioners memorise a handful of captions: greedy decoding gives the training captions back exactly."""

from __future__ import annotations

import pytest
import torch
from lstm_helpers import BUILDERS, EOS, batch_of, features_for

from captionkit.decoding import generate

# five "images", captions of different lengths that share words, so the image must decide every choice
CAPTIONS = [[4, 5, 6, 7], [4, 5, 8], [9, 5, 6, 10, 11, 12], [13, 14, 5, 15, 16], [9, 17, 18, 19, 20, 21, 22]]


@pytest.mark.parametrize("name", BUILDERS)
def test_overfits_a_handful_of_captions(name):
    torch.manual_seed(0)
    model = BUILDERS[name](dropout=0.1)
    feats = features_for(model, len(CAPTIONS), seed=1)
    input_ids, labels = batch_of(CAPTIONS)
    batch = {"features": feats, "input_ids": input_ids, "labels": labels}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        optimizer.zero_grad()
        loss = model(batch).loss
        loss.backward()
        optimizer.step()
    assert generate(model, feats, EOS, max_new_tokens=12) == CAPTIONS
    assert generate(model, feats, EOS, num_beams=3, max_new_tokens=12) == CAPTIONS
