"""The demo dataset's caption grammar: its vocabulary, the reference captions it writes, and its parser.

One module holds both directions so that `parse_objects` reads exactly the language `describe_scene` writes
(object_f1 depends on that), and a model's caption in that language is scored the same way.

A scene (one entry of scenes.json) is a dict:
  {"background": {"colour": "grey", "texture": "noise"},
   "objects": [{"shape": "circle", "colour": "red", "size": "large", "x": 0.5, "y": 0.2, ...}, ...],
   "relations": [{"subject": ["red", "circle"], "relation": "left of", "object": ["blue", "square"]}, ...]}
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

# RGB of each object colour: saturated and far apart, so none is confused with another or with the achromatic
# backgrounds below (the backgrounds never share a colour with an object).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (240, 215, 30),
    "green": (40, 165, 60),
    "blue": (35, 80, 225),
    "purple": (145, 60, 200),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
BACKGROUNDS = ("white", "grey", "black")
BACKGROUND_TEXTURES = ("plain", "gradient", "noise")
RELATIONS = ("left of", "right of", "above", "below")

# Wording: a shape has one or two nouns (synonyms a human might use), each with its plural.
SHAPE_NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "circle": (("circle", "circles"), ("disc", "discs")),
    "square": (("square", "squares"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"),),
    "star": (("star", "stars"),),
    "cross": (("cross", "crosses"),),
}
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
RELATION_WORDS = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")

# Parser tables. Count words cover more than the generator writes (four, five, pair) so a model's caption that says
# "four red circles" is read as four, not ignored.
_NOUN_TO_SHAPE = {
    noun: (shape, plural)
    for shape, nouns in SHAPE_NOUNS.items()
    for sing, plur in nouns
    for noun, plural in ((sing, False), (plur, True))
}
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "pair": 2, "three": 3, "four": 4, "five": 5}
_SIZE_TO_WORDS = {w for words in SIZE_WORDS.values() for w in words}
_TOKEN = re.compile(r"[a-z]+|[.,]")


def kind_counts(scene: dict[str, Any]) -> Counter:
    """The scene's objects as a multiset of (colour, shape)."""
    return Counter((o["colour"], o["shape"]) for o in scene["objects"])


def parse_objects(caption: str) -> Counter:
    """The (colour, shape) objects a caption mentions, with counts: "two red circles and a blue disc" ->
    Counter({("red", "circle"): 2, ("blue", "circle"): 1}).

    Reads the noun phrases the generator writes, `[count] [size] colour shape`: each shape noun (either synonym,
    singular or plural) takes the colour word right before it and the count word before that. A shape without a
    colour counts as (None, shape) so it can never match a scene object; a phrase without a count word counts 1
    (singular) or 2 (plural).
    """
    tokens = _TOKEN.findall(caption.lower())
    found: Counter = Counter()
    for i, token in enumerate(tokens):
        if token not in _NOUN_TO_SHAPE:
            continue
        shape, plural = _NOUN_TO_SHAPE[token]
        j = i - 1
        colour = tokens[j] if j >= 0 and tokens[j] in COLOURS else None
        if colour is not None:
            j -= 1
        while j >= 0 and tokens[j] in _SIZE_TO_WORDS:
            j -= 1
        if j >= 1 and tokens[j] == "of" and tokens[j - 1] == "pair":  # "a pair of red circles"
            j -= 1
        count = _COUNT_WORDS.get(tokens[j]) if j >= 0 else None
        found[(colour, shape)] += count if count is not None else (2 if plural else 1)
    return found


class _Words:
    """Picks wording with one seeded generator; every choice is an index so the stream is reproducible."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options: tuple | list, p: list[float] | None = None) -> Any:
        return options[int(self.rng.choice(len(options), p=p))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def _noun_phrase(words: _Words, colour: str, shape: str, count: int, size: str, mention_size: bool) -> str:
    sing, plur = words.pick(SHAPE_NOUNS[shape])
    adjectives = ([words.pick(SIZE_WORDS[size])] if mention_size else []) + [colour]
    if count == 1:
        det = words.pick(("a", "one", "a single"), p=[0.6, 0.25, 0.15])
        if det == "a":
            det = _article(adjectives[0])
        return " ".join([det, *adjectives, sing])
    return " ".join([NUMBER_WORDS[count], *adjectives, plur])


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return " , ".join(phrases[:-1]) + " and " + phrases[-1]


def _caption(words: _Words, scene: dict[str, Any]) -> str:
    counts = kind_counts(scene)
    sizes = {(o["colour"], o["shape"]): o["size"] for o in scene["objects"]}
    kinds = list(counts)
    order = [kinds[int(i)] for i in words.rng.permutation(len(kinds))]
    mention_size = words.chance(0.35)  # per caption, like a person who does or does not care about size
    phrase = {k: _noun_phrase(words, *k, counts[k], sizes[k], mention_size and words.chance(0.8)) for k in kinds}
    bg = scene["background"]["colour"]
    on_bg = words.pick((f"on a {bg} background", f"against a {bg} background", f"on {bg}"), p=[0.6, 0.25, 0.15])
    listed = _join([phrase[k] for k in order])
    be = "is" if counts[order[0]] == 1 else "are"
    total = sum(counts.values())

    relations = scene.get("relations", [])
    if relations and words.chance(0.35):
        rel = relations[int(words.rng.integers(len(relations)))]
        subj, obj = tuple(rel["subject"]), tuple(rel["object"])
        rel_words = words.pick(RELATION_WORDS[rel["relation"]])
        verb = ("is " if counts[subj] == 1 else "are ") if words.chance(0.4) else ""
        text = f"{phrase[subj]} {verb}{rel_words} {phrase[obj]}"
        rest = [phrase[k] for k in order if k not in (subj, obj)]
        if rest:
            text += " , and " + _join(rest)
        if words.chance(0.3):
            text += " " + on_bg
        return text + " ."

    template = int(words.rng.integers(6 if total > 1 else 5))
    if template == 0:
        text = listed
    elif template == 1:
        text = f"{listed} {on_bg}"
    elif template == 2:
        text = f"there {be} {listed}" + (f" {on_bg}" if words.chance(0.4) else "")
    elif template == 3:
        text = f"a {bg} background with {listed}"
    elif template == 4:
        text = words.pick(("a picture of", "an image of", "a drawing of")) + f" {listed}"
    else:
        text = f"{NUMBER_WORDS[total]} shapes {on_bg} , {listed}"
    return text + " ."


def describe_scene(scene: dict[str, Any], rng: np.random.Generator, n: int = 5) -> list[str]:
    """`n` reference captions of a scene that differ in wording and object order, as human captions do; lowercase,
    tokens separated by spaces, ending in " ." like Flickr8k's."""
    words = _Words(rng)
    captions: list[str] = []
    for _ in range(20 * n):  # distinct captions when the scene allows; a one-object scene still has dozens
        caption = _caption(words, scene)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == n:
            return captions
    while len(captions) < n:
        captions.append(_caption(words, scene))
    return captions
