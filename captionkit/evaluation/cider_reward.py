"""CIDEr-D as a batched reward (self-critical training): document frequencies of a fixed reference set computed
once, then every candidate of a batch scored against its image's references in a handful of numpy operations.

Per candidate the value is exactly pycocoevalcap's CIDEr-D (`Cider`, n=4, sigma=6) computed with the document
frequencies and log(number of images) of `references`: tf-idf n-gram vectors, clipped cosine per n-gram order,
Gaussian length penalty on the difference in *bigram* counts (pycocoevalcap's `length`), mean over orders,
mean over references, times 10. Captions are PTB-tokenized as the metrics are (captionkit's pure-Python tokenizer,
tested equal to pycocoevalcap's Java one). Written by hand because pycocoevalcap scores one caption at a time in
Python dictionaries (and recomputes document frequencies on every call); no maintained library batches CIDEr-D.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from captionkit.evaluation import ptb_tokenizer

PAD = -2  # word matrix padding
UNKNOWN = -1  # an n-gram (or word) that no reference has


@dataclass
class _Entries:
    """The distinct n-grams of a list of sentences: one row per (sentence, n-gram)."""

    sentence: np.ndarray  # (E,) sentence index
    gid: np.ndarray  # (E,) global n-gram id (offset by order), UNKNOWN when no reference has it
    order: np.ndarray  # (E,) n - 1
    tf: np.ndarray  # (E,) occurrences of the n-gram in the sentence
    bigrams: np.ndarray  # (S,) bigram count of each sentence (pycocoevalcap's `length`)


class CiderD:
    """`CiderD(references)(image_ids, candidates)` -> per-candidate CIDEr-D, shape (C,), float64.

    references: {image id: [reference caption, ...]} (raw text; `tokenized=True` when already PTB-tokenized).
    A call scores candidate i against the references of image_ids[i]; an image may appear many times (K samples).
    """

    def __init__(
        self, references: Mapping[Hashable, Sequence[str]], n: int = 4, sigma: float = 6.0, tokenized: bool = False
    ) -> None:
        if not references:
            raise ValueError("CiderD needs at least one image with references")
        self.n, self.sigma, self.tokenized = n, sigma, tokenized
        self.image_index = {key: i for i, key in enumerate(references)}
        refs = [list(references[key]) for key in references]
        if any(not r for r in refs):
            raise ValueError("every image needs at least one reference caption")
        counts = np.array([len(r) for r in refs])
        flat = [c for r in refs for c in r]
        words = self._split(flat)
        self.vocab: dict[str, int] = {}
        for sentence in words:
            for w in sentence:
                self.vocab.setdefault(w, len(self.vocab))
        self.V = max(len(self.vocab), 1)
        matrix = self._word_matrix(words, grow=False)
        # per order: the sorted chained keys of every reference n-gram (prefix id * V + last word)
        self.keys: list[np.ndarray] = []
        entries = self._entries(matrix, build=True)
        self.ref_len = np.log(float(len(refs)))  # pycocoevalcap: log(number of images scored)
        ref_image = np.repeat(np.arange(len(refs)), counts)  # (R,) image of each reference sentence
        slot = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)  # (R,) index within its image
        # document frequency: in how many images' references an n-gram occurs
        pairs = np.unique(ref_image[entries.sentence] * self.G + entries.gid)
        self.df = np.bincount(pairs % self.G, minlength=self.G).astype(np.float64)
        self.idf = self.ref_len - np.log(np.maximum(1.0, self.df))  # (G,)
        weight = entries.tf * self.idf[entries.gid]
        self.rmax = int(counts.max())
        self.num_refs = counts.astype(np.float64)  # (I,)
        norms = np.zeros((len(flat), n))
        np.add.at(norms, (entries.sentence, entries.order), weight**2)
        self.ref_norm = np.zeros((len(refs), self.rmax, n))  # (I, Rmax, n); 0 for missing slots
        self.ref_norm[ref_image, slot] = np.sqrt(norms)
        self.ref_bigrams = np.zeros((len(refs), self.rmax))
        self.ref_bigrams[ref_image, slot] = entries.bigrams
        # the join table: reference entries sorted by (image, n-gram)
        join = ref_image[entries.sentence] * self.G + entries.gid
        order = np.argsort(join, kind="stable")
        self.join_key = join[order]
        self.join_slot = slot[entries.sentence][order]
        self.join_weight = weight[order]

    # ------------------------------------------------------------------------------------------------ scoring
    def __call__(self, image_ids: Sequence[Hashable], candidates: Sequence[str]) -> np.ndarray:
        if len(image_ids) != len(candidates):
            raise ValueError(f"{len(image_ids)} image ids for {len(candidates)} candidates")
        try:
            img = np.array([self.image_index[k] for k in image_ids], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"image id {exc.args[0]!r} has no references in this CiderD") from None
        C, n = len(candidates), self.n
        if C == 0:
            return np.zeros(0)
        e = self._entries(self._word_matrix(self._split(list(candidates)), grow=True), build=False)
        weight = e.tf * np.where(e.gid >= 0, self.idf[np.maximum(e.gid, 0)], self.ref_len)  # unknown: df 0
        cand_norm = np.sqrt(np.bincount(e.sentence * n + e.order, weights=weight**2, minlength=C * n)).reshape(C, n)
        # numerator: sum over shared n-grams of min(w_cand, w_ref) * w_ref, per (candidate, reference, order)
        known = e.gid >= 0
        key = img[e.sentence[known]] * self.G + e.gid[known]
        lo = np.searchsorted(self.join_key, key, side="left")
        hi = np.searchsorted(self.join_key, key, side="right")
        hits = hi - lo  # references of that image having the n-gram
        rep = np.repeat(np.arange(key.size), hits)
        pos = lo[rep] + np.arange(rep.size) - np.repeat(np.cumsum(hits) - hits, hits)
        w_ref = self.join_weight[pos]
        contrib = np.minimum(weight[known][rep], w_ref) * w_ref
        index = (e.sentence[known][rep] * self.rmax + self.join_slot[pos]) * n + e.order[known][rep]
        num = np.bincount(index, weights=contrib, minlength=C * self.rmax * n).reshape(C, self.rmax, n)
        denom = cand_norm[:, None, :] * self.ref_norm[img]  # (C, Rmax, n)
        val = np.divide(num, denom, out=np.zeros_like(num), where=denom != 0)
        delta = e.bigrams[:, None] - self.ref_bigrams[img]  # (C, Rmax)
        val *= np.exp(-(delta**2) / (2 * self.sigma**2))[:, :, None]
        return val.sum(axis=1).mean(axis=1) / self.num_refs[img] * 10.0

    # ------------------------------------------------------------------------------------------------ helpers
    def _split(self, captions: list[str]) -> list[list[str]]:
        lines = captions if self.tokenized else ptb_tokenizer.tokenize_lines(captions)
        return [line.split() for line in lines]

    def _word_matrix(self, sentences: list[list[str]], grow: bool) -> np.ndarray:
        """(S, Lmax) word ids, PAD after each sentence; words no reference has get ids >= V (distinct per call)."""
        extra: dict[str, int] = {}
        width = max((len(s) for s in sentences), default=0)
        out = np.full((len(sentences), max(width, 1)), PAD, dtype=np.int64)
        for i, sentence in enumerate(sentences):
            ids = [self.vocab.get(w, -1) for w in sentence]
            if grow and -1 in ids:
                ids = [x if x >= 0 else self.V + extra.setdefault(w, len(extra)) for x, w in zip(ids, sentence)]
            out[i, : len(ids)] = ids
        return out

    def _entries(self, words: np.ndarray, build: bool) -> _Entries:
        """Distinct n-grams per sentence with their counts and global ids; `build` assigns ids (references)."""
        S, L = words.shape
        lengths = (words != PAD).sum(axis=1)
        ids = np.where(words == PAD, PAD, np.where(words < self.V, words, UNKNOWN))  # order-1 ids = word ids
        sentence, gid, order, rows = [], [], [], []
        offset = 0
        for k in range(self.n):  # k = n - 1
            if k > 0:
                prev, last = ids[:, : L - k], words[:, k:]
                valid = last != PAD
                key = np.where((prev >= 0) & (last < self.V) & (last >= 0), prev * self.V + last, UNKNOWN)
                if build:
                    self.keys.append(np.unique(key[valid]))
                table = self.keys[k - 1]
                found = np.minimum(np.searchsorted(table, key), max(table.size - 1, 0))
                known = (key >= 0) & (table[found] == key) if table.size else np.zeros(key.shape, dtype=bool)
                ids = np.where(valid, np.where(known, found, UNKNOWN), PAD)
                size = table.size
            else:
                valid = words != PAD
                size = self.V
            s, p = np.nonzero(valid)
            # exact identity of each occurrence (unknown n-grams too): sentence + the n words
            window = np.stack([s] + [words[s, p + j] for j in range(k + 1)], axis=1)
            uniq, first, count = np.unique(window, axis=0, return_index=True, return_counts=True)
            g = ids[s[first], p[first]]
            sentence.append(uniq[:, 0])
            gid.append(np.where(g >= 0, g + offset, UNKNOWN))
            order.append(np.full(uniq.shape[0], k))
            rows.append(count.astype(np.float64))
            offset += size
        if build:
            self.G = offset
        return _Entries(
            sentence=np.concatenate(sentence),
            gid=np.concatenate(gid),
            order=np.concatenate(order),
            tf=np.concatenate(rows),
            bigrams=np.maximum(lengths - 1, 0).astype(np.float64),
        )
