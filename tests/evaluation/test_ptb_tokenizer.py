"""The pure-Python PTB tokenizer gives exactly what pycocoevalcap's Java PTBTokenizer gives."""

from __future__ import annotations

import random

import pytest

from captionkit.evaluation.metrics import java_ptb_tokenize
from captionkit.evaluation.ptb_tokenizer import ptb_tokens, tokenize, tokenize_lines

# Hand-made hard cases, each checked against the 3.4.1 jar (quotes, contractions, abbreviations, numbers,
# brackets, URLs, symbols, unicode, characters outside the BMP, context from the next line).
HARD_CASES = [
    "A man's colour favourite Programme can't won't don't I'm they're we've she'd",
    "He said \"hello\" to 'them' and `that` ... and -- dash - hyphen well-known",
    "a/b 3*4 & <b> (paren) [sq] {curly} 1,000 3.14 $5 U.S. e.g. Mr. Smith",
    "Caf\xe9 na\xefve \u2014 em dash \u2013 en dash \u201cquoted\u201d \u2018single\u2019 \u2026 ellipsis",
    "gonna wanna gotta cannot lemme d'ye 'tis 'twas y'all o'clock rock'n'roll",
    "A dog's tail. The dogs' tails. O'Neil #hashtag @user http://x.com a@b.com",
    "anaesthetic analyse colour colours neighbour neighbours honour harbour behaviour grey theatre centre metre",
    "",
    "hello.world e.g. the dog i.e. a cat etc. and so on",
    "A man in a t-shirt and x-ray 10-year-old 2-3 dogs 3-on-3 game mid-air",
    "Mr. Smith and Dr. Jones at St. Paul in the U.S. The dog",
    "He is in the U.S. He runs",
    "a 12:30 clock 1/2 cup 5 7/8 inch 3.5 -5 +3 10% 4x4 2nd 1st 20s '90s",
    "dogs' bone the boys' toys children's the '80s rock 'n' roll",
    "\"Hello,\" he said. 'Hi' she said 'em",
    "a man ' s dog , a woman 's cat",
    "he's she'll we'd you're i've it'll y'know",
    "don't won't can't shouldn't isn't ain't wasn't DON'T Can't",
    "ma'am o'clock o'neill d'artagnan l'oreal",
    "a b/w photo w/ a dog 24/7 and/or him/her",
    "a dog&cat AT&T R&D B&W black & white",
    "john@example.com www.google.com foo.com http://a.b/c?d=e",
    "#1 #hashtag @name $100 US$5 \xa35 \u20ac5 \xa55 5\xa2",
    "the dog -- the cat --- the bird ---- the fish",
    "a . . . b ... c .... d ..... e \u2026",
    "a dog!!! really?! what?? wow!?",
    "a dog ; a cat : a bird",
    "a *star* and ** bold ** _under_ ~tilde^ a|b a\\b",
    "[bracket] {brace} <angle> (paren)",
    "3 \xd7 4 \xb0 \xb2 \xbd \xbc \xbe \u2153",
    "a man wearing a hat.A dog",
    "a man wearing a hat .a dog",
    "I. A. Richards and J.R.R. Tolkien",
    "Inc. Corp. Ltd. Co. Jan. Feb. Mon. No. 5",
    "A. Lincoln",
    "a.m. p.m. 5 p.m. The",
    "caf\xe9 r\xe9sum\xe9 na\xefve Zo\xeb S\xe3o Paulo",
    "\u041c\u043e\u0441\u043a\u0432\u0430 \u5317\u4eac \u6771\u4eac \u65e5\u672c\u8a9e "
    "\ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "emoji \U0001f600 \U0001f436 \u2764 \u2605 \u263a \u2713 \u2192 \u2190",
    "a man is sitting on a bench",
    "soft\xadhyphen zero\u200bwidth",
    "",
    "hello!world hello?world dunno gimme 'tis",
    '<a b> <3 a<b a < b <a href="x"> </b>',
    "x-ray's t-shirt's don'ts rock'n'roll it's. it's",
    "o'clock's dog's-eye 'cause 'till 'til '90s '9 'em 'n' n' 'n",
    "he said 'hello' 'a' 'I am' 'go",
    "a 12-pack 6-year-old 3.5-inch 1,000-foot 10:30-11:30 5-10 -10 --10 a-b-c-d-e-f",
    "co-op re-enter anti-war pro-life e-mail x-men so-called mm-hm",
    "9/11 1/2/2003 12/25/99 3/4/5/6 a/b/c/d 1/2/3",
    "$5.00 US$ 5 C$ A$ HK$5 #5 ## @@ __ ***",
    ":) :-) ;) :( :D :P <3",
    "(555) 123-4567 555-123-4567 555.123.4567",
    "a.b.c. d.e A.B.C a.b",
    "it's cold. I'm here. we'll go! they'd go? you've got, she'll see;",
    "st. john st john ave. blvd. rd. mt. ft. vs. v. cf. ca. 5 fig. 3 no. 5",
    "Jan. 5 jan. The Mon. The tues. the",
    "x -- y x--y x---y x----y x-----y x\u2014y x\u2013y",
    "a man - like thing - ish -- and then",
    "3d 3-d 3D 2x 2.5x 100m 5k 10k 4th of july",
    "U.S.A. U.K. N.Y. L.A. D.C. A.M. P.M.",
    "don't. can't! won't? isn't, aren't;",
    'the "big" dog "a" the" dog "" "\'hi\'"',
    "a 'big' dog a '' b a ` b a `` b a ' b",
    "they're're he'sn't gon'",
    "ALL CAPS DON'T CAN'T I'M WE'LL",
    "",
    "a...... b ....... c .. d",
    "\U0001d400bc \U00020000 x",
    "\u2154 \u2155 \u215b",
    "a dog., a cat.; x-ray., a.b., t-shirt.,",
    "the letter a. the b. A dog. I. a b. x",
    "a man in a t. shirt",
    "his arm. He",
    "no. 5 No. Five fig. 3",
    "a\xa0b c\u2009d e\u3000f",
    "ok! E! yahoo! c++ c# f#",
    "f**k sh*t",
    "file.jpg foo.txt",
    "2010-01-01T10:20:30Z 20\xb0C 20 \xb0F",
    "pty. ltd. co. ltd.",
    "&quot;hi&quot; &amp; &lt; &gt; &nbsp; &mdash; &apos;s",
    "one-on-one two-year-old's mid-90s",
    "a \xabquote\xbb \u201elow\u201c \u2039single\u203a",
    "x\xb4s dog\xb4s",
    "a `' b '` c \u201ax\u201a \u201ey\u201c ''z'' `` w ``",
    "x\u201e y \x82 z \x84",
    "it\u2019s dog\u2019s don\u2019t o\u2019clock \u2018hi\u2019",
    "a\U0001f600b c",
    "2nd \xbdx x\xbd 3\xbd \u216b \u2460",
    "10:30 :30 5:5:5 1.2.3 ,5 .5 1,2",
    "a \xad b",
    "soft\xadhyphen's",
    "fig.",
    "x",
    "fig.",
    "The",
    "b. b.",
    "x",
    "b.",
    "A dog",
    "no.",
    "5",
    "no.",
    "x",
    "ca.",
    "x fig.",
    "",
    "x b.",
    "",
    "x no.",
    "",
    "x",
]

FRAGMENTS = [
    "a",
    "A",
    "man",
    "Dog",
    "'s",
    "n't",
    "'",
    '"',
    "`",
    "``",
    "''",
    "-",
    "--",
    "---",
    "...",
    ".",
    ",",
    ";",
    ":",
    "!",
    "?",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "&",
    "&amp;",
    "$",
    "#",
    "@",
    "%",
    "*",
    "/",
    "\\",
    "5",
    "10",
    "3.5",
    "1,000",
    "10:30",
    "1/2",
    "-5",
    "+3",
    "x-ray",
    "t-shirt",
    "don't",
    "can't",
    "I'm",
    "it's",
    "o'clock",
    "St.",
    "Mr.",
    "U.S.",
    "e.g.",
    "etc.",
    "a.m.",
    "No.",
    "The",
    "He",
    "In",
    "cannot",
    "gonna",
    "wanna",
    "'em",
    "'90s",
    "caf\u00e9",
    "na\u00efve",
    "\u2013",
    "\u2014",
    "\u201c",
    "\u201d",
    "\u2018",
    "\u2019",
    "\u2026",
    "\u00bd",
    "\u00b0",
    "\u00d7",
    "\u00df",
    "\u0130",
    "\ufb01",
    "\u03a3\u0391\u03a3",
    "<b>",
    "<",
    ">",
    "=",
    "+",
    "~",
    "^",
    "|",
    "2nd",
    "4x4",
    "b/w",
    "w/",
    "24/7",
    ":)",
    ";)",
    ":(",
    "<3",
    "www.x.com",
    "a@b.com",
    "http://x.y/z",
    "#tag",
    "@me",
    "c++",
    "c#",
    "co-op",
    "well-known",
    "10-year-old",
    "3-d",
    "mid-air",
    "A.",
    "I.",
    "a.",
    "b.",
    "Inc.",
    "Jan.",
    "vs.",
    "fig.",
    "ca.",
    "'til",
    "y'all",
    "ma'am",
    "rock'n'roll",
    "dogs'",
]


def random_captions(n: int, seed: int = 1) -> list[str]:
    """Space-separated mixes of the fragments above: words and marks in every order and context."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def java_output(need_java, fixture_lines):
    """One Java run: the fixture captions, the hard cases and 2,000 random mixes, each lexed as its own stream."""
    streams = [fixture_lines, HARD_CASES, random_captions(2000)]
    return streams, java_ptb_tokenize(*streams)


def _diffs(lines, expected, got):
    return [(line, e, g) for line, e, g in zip(lines, expected, got) if e != g][:5]


def test_every_fixture_caption_matches_java(java_output):
    (lines, _, _), (expected, _, _) = java_output
    assert len(lines) == 40460
    got = tokenize_lines(lines)
    assert _diffs(lines, expected, got) == []
    assert got == expected


def test_hard_cases_match_java(java_output):
    (_, lines, _), (_, expected, _) = java_output
    got = tokenize_lines(lines)
    assert _diffs(lines, expected, got) == []


def test_random_mixes_match_java(java_output):
    (_, _, lines), (_, _, expected) = java_output
    got = tokenize_lines(lines)
    assert _diffs(lines, expected, got) == []


def test_java_wrapper_matches_pycocoevalcap(need_java, fixture_captions):
    """Our one-JVM Java call (-ioFileList, temp files outside site-packages) == pycocoevalcap's PTBTokenizer."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sample = dict(list(fixture_captions.items())[:400])
    ours = tokenize(sample)  # pure Python; equality to Java on these lines is covered above
    (java_lines,) = java_ptb_tokenize([c for caps in sample.values() for c in caps])
    reference = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in sample.items()})
    assert [c for caps in reference.values() for c in caps] == java_lines
    assert ours == reference


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A man's dog (big) can't swim.", "a man 's dog -lrb- big -rrb- ca n't swim"),
        ('He said "hi" -- then left...', "he said hi then left"),
        ("cannot gonna 'tis", "can not gon na 't is"),
        ("a 5 7/8 inch pipe", "a 5\u00a07/8 inch pipe"),
        ("\u201cCaf\u00e9\u201d \u2014 na\u00efve", "caf\u00e9 na\u00efve"),
        ("a dog \U0001f436 runs", "a dog runs"),
        ("", ""),
        ("A", "a"),
    ],
)
def test_known_outputs_without_java(text, expected):
    assert tokenize_lines([text]) == [expected]


def test_next_line_decides_abbreviations():
    # "b." before a sentence starter is a letter plus a full stop; "fig." before a digit keeps its period.
    assert ptb_tokens("a b.", following="A dog") == ["a", "b", "."]
    assert ptb_tokens("see fig.", following="3 dogs") == ["see", "fig."]
    assert ptb_tokens("see fig.", following="dogs") == ["see", "fig", "."]


def test_line_breaks_inside_a_caption_stay_on_its_line():
    assert tokenize_lines(["a\rb\u2028c", "d"]) == ["a b c", "d"]
