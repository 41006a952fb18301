"""N captions per image per epoch, and a fine-tuned encoder in its own optimizer groups."""

from collections import Counter

from captionkit.training.data import EpochSampler, image_groups


def test_captions_per_image_visits_each_image_n_times_with_changing_captions():
    pairs = [(f"img{i // 5}", [i]) for i in range(40)]  # 8 images x 5 captions
    groups = image_groups(pairs)
    assert groups[1] == [5, 6, 7, 8, 9]
    sampler = EpochSampler(len(pairs), seed=0, groups=groups, per_group=2)
    seen = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 16
        assert Counter(pairs[i][0] for i in order) == Counter({f"img{k}": 2 for k in range(8)})
        seen.append(frozenset(order))
    assert len(set(seen)) > 1  # other captions are drawn in other epochs


def test_encoder_lr_puts_a_fine_tuned_encoder_in_its_own_groups():
    from captionkit.models.base import build_model
    from captionkit.registry import get_preset
    from captionkit.training.caption_job import param_groups

    model_data = {**get_preset("tiny-show-tell-merge")["model"], "vocab_size": 20}
    model = build_model(model_data)
    groups = param_groups(model, weight_decay=0.1, lr=1e-3, encoder_lr=1e-4)
    encoder = {id(p) for p in model.image_encoder.parameters() if p.requires_grad}
    assert encoder
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= encoder or not ids & encoder  # never mixed
        assert group["lr"] == (1e-4 if ids <= encoder else 1e-3)
        assert group["weight_decay"] == (0.1 if group["params"][0].dim() >= 2 else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(model.trainable_parameters())
    assert {g["lr"] for g in param_groups(model, 0.0, 1e-3)} == {1e-3}
