"""Pure-Python PTB tokenizer: the same output as pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1) on captions.

pycocoevalcap runs `java edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` on one caption per line,
then drops the tokens in PUNCTUATIONS. Without Java that JFlex lexer cannot run, so this module re-implements the
part of its grammar that caption text reaches, as a maximal-munch lexer (longest match wins, trailing context counts
towards the length, ties go to the earlier rule, as in JFlex). The rules and their quirks (e.g. "(" -> "-LRB-" which
-lowerCase turns into "-lrb-", so pycocoevalcap's punctuation filter never removes it; "cannot" -> "can not";
"gonna" -> "gon na"; curly quotes -> LaTeX quotes) were checked against the 3.4.1 jar that pycocoevalcap ships:
tests/evaluation/test_ptb_tokenizer.py compares every caption of the Flickr8k token file and a list of hand-made
hard cases with the Java output. Rare constructs outside caption text (phone numbers, SGML with attributes,
Asian smileys) are not modelled; the Java tokenizer stays the reference whenever Java is installed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K")

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens removed after tokenization (exact list and spelling).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Characters the Java tokenizer treats as line breaks; captions are one per line, so they become spaces.
_LINE_BREAK_TABLE = {ord(c): " " for c in "\r\n\u2028\u2029\u000b\u000c\u0085"}
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _numeric_non_digits() -> str:
    """A [...] body of the BMP characters Python counts as alphanumeric but Java as neither letter nor digit
    (numeric symbols such as "\u00bd" or "\u216b"), so `[^\\W\\d_]` can be narrowed to letters."""
    chars = [
        chr(c) for c in range(0x80, 0x10000) if chr(c).isalnum() and not chr(c).isalpha() and not chr(c).isdecimal()
    ]
    ranges, start = [], None
    for i, ch in enumerate(chars):
        if start is None:
            start = ch
        if i + 1 == len(chars) or ord(chars[i + 1]) != ord(ch) + 1:
            ranges.append(start if start == ch else f"{start}-{ch}")
            start = None
    return "".join(ranges)


# ---- character classes (JFlex %caseless does not apply inside [...]; literal words use (?i:...)) ----
_NUMERIC_SYMBOLS = _numeric_non_digits()
# soft hyphen and combining marks: part of a word in the Java lexer, not letters for Python
_MARKS = r"[\u00AD\u0300-\u036F\u0483-\u0487\u0591-\u05BD\u064B-\u065E\u0900-\u0903\u093C\u093E-\u094E]"
_LET = rf"(?:(?![{_NUMERIC_SYMBOLS}])[^\W\d_]|{_MARKS})"
_DIG = r"\d"
_ALNUM = rf"(?:(?![{_NUMERIC_SYMBOLS}])[^\W_])"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOSETC = r"(?:['\u0092\u2019`\u0091\u2018\u201B]|&apos;)"
_SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
_NL = r"(?:\r\n|[\r\n\u2028\u2029\u000B\u000C\u0085])"
_SPACENL = rf"(?:{_SPACE}|{_NL})"
_NUM = rf"(?:{_DIG}*(?:[.:,\u00AD\u066B\u066C]{_DIG}+)+|{_DIG}+)"
_NUMBER = rf"[-+]?{_NUM}"
_WORD = rf"{_LET}(?:{_LET}|{_DIG})*(?:[.!?]{_LET}(?:{_LET}|{_DIG})*)*"
_REDAUX = rf"{_APOS}(?:[msdMSD]|(?i:re|ve|ll))"
_SWORD = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
_SREDAUX = rf"[nN]{_APOSETC}[tT]"
_HYPHEN = r"[-_\u058A\u2010\u2011]"
_ACRO = r"(?:[A-Za-z](?:\.[A-Za-z])*|(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)|(?i:u\.s\.-(?:u\.k|u\.s\.s\.r)))"
_ACRO2 = r"(?:[A-Za-z](?:\.[A-Za-z])+)"
_ABMONTH = r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_ABDAYS = r"mon|tue|tues|wed|thu|thurs|fri"
_ABSTATE_I = (
    r"ala|ariz|calif|colo|conn|ct|dak|fla|ga|ind|kans?|ky|md|mich|minn|mo|mont|neb|nev|okla|penn|tenn|va|"
    r"vt|wisc?|wyo"
)
_ABSTATE_CS = r"A(?i:z|rk)|D(?i:el)|I(?i:ll)|L(?i:a)|M(?i:ass|iss)|O(?i:re)|P(?i:a)|T(?i:ex)|W(?i:ash)"
_ABCOMP = r"inc|cos?|corp|pp?t[ye]s?|ltd|plc|rt|bancorp|bhd|assn|univ|intl|sys"
_ABBREV1 = (
    rf"(?:(?i:{_ABMONTH}|{_ABDAYS}|{_ABSTATE_I}|{_ABCOMP}|tel|est|ext|sq|jr|bros|(?:ed|ph)\.d|esq|etc|al|seq"
    rf"|bldg)|{_ABSTATE_CS})\."
)
_ABTITLE = (
    r"(?i:mr|mrs|ms|mx|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt|capt|"
    r"ste?|ave|pres|lieut|rt|hon|brig|co?mdr|pfc|spc|supts?|det|mt|ft|adj|adv|asst|assoc|ens|insp|mlle|mme|"
    r"msgr|sfc|sr)|M(?i:iss)"
)
_ABBREV4 = (
    rf"(?:{_ABTITLE}|(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas|ph|invt|elec|natl|m[ft]g|dept|blvd|rd|ave)"
    rf"|v|{_ACRO})"
)
_ABBREV3 = r"(?:(?i:ca|figs?|prop|nos?|sect?s?|arts?|paras?|bldg|pp|op|approx|rs)|Pt)\."
_SENT_STARTERS = (
    "About According Additionally After An A As At But Did During Earlier He Her Here How However If In "
    "It Last Many More Mr. Ms. Now Once One Other Our She Since So Some Such That The Their Then There "
    "These They This We When While What Who Why Yet You"
).split()
_SENT_STARTER = "|".join(f"{w[0]}(?i:{re.escape(w[1:])})" for w in sorted(_SENT_STARTERS, key=len, reverse=True))
_SGML = (
    r"<(?:[!?][A-Za-z-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.-]*(?:[ ]+(?:[A-Za-z][A-Za-z0-9_:.-]*[ ]*=[ ]*"
    r"(?:'[^']*'|\"[^\"]*\"|[A-Za-z][A-Za-z0-9_:.-]*)|[A-Za-z][A-Za-z0-9_:.-]*))*[ ]*/?"
    r"|/[A-Za-z][A-Za-z0-9_:.-]*)[ ]*>"
)
_THING = (
    rf"(?:[dDoOlL]{_APOSETC}{_ALNUM})?(?:{_ALNUM}+|{_NUMBER})"
    rf"(?:{_HYPHEN}(?:[dDoOlL]{_APOSETC}{_ALNUM})?(?:{_ALNUM}+|{_NUM}))*"
)
_HTHING = rf"{_ALNUM}(?:{_ALNUM}|[.,\u00AD])*(?:-(?:(?:{_ALNUM}|\u00AD)+(?:\.{_DIG}+)?|{_ACRO2}\.))+"
_THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
_THINGA = r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+"
_APOWORD = (
    rf"{_APOS}n{_APOS}?|[lLdDjJ]{_APOS}|(?i:dunkin|somethin|ol){_APOS}|{_APOS}(?i:em)"
    rf"|(?i:diff){_APOSETC}(?i:rent)|[A-HJ-XZn]{_APOSETC}{_LET}{{2}}{_LET}*|{_APOS}[2-9]0(?i:s)"
    rf"|{_APOS}(?i:till?)"
    rf"|{_LET}+[aeiouyAEIOUY]{_APOSETC}[aeiouA-Z]{_LET}*|{_APOS}(?i:cause)|(?i:cont'd\.?|nor'easter|c'mon"
    rf"|e'er|s'mores|ev'ry|li'l|nat'l)|O{_APOSETC}o"
)
_QUOTES = r"(?:[`\u2018-\u201F\u0091-\u0094\u2039\u203A\u00AB\u00BB]{1,2}|''|['\u0092]|&apos;)"
_DBLQUOT = r"(?:\"|&quot;)"
_INSENTP = r"[,;:\u3001]"
_MISCSYMBOL = (
    "[+%&~^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00ba\u00d7\u00f7\u0387\u05be\u05c0\u05c3"
    "\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b\u061e\u066a\u066d\u0703-\u070d"
    "\u07f6-\u07f8\u0964\u0965\u0e4f\u1fbd\u2016\u2017\u2020-\u2025\u2030-\u2038\u203b\u203c\u203e-\u2044"
    "\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff\u2200-\u2bff\u3001-\u3006\u3008-\u3020\u30fb"
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]"
)

# ---- token rewriting (what the lexer's actions do to the matched text) ----
_LEFT_SINGLE = re.compile("[\u0091\u2018\u201b\u2039]")
_RIGHT_SINGLE = re.compile("[\u0092\u2019\u203a]")
_LEFT_DOUBLE = re.compile("[\u0093\u201c\u00ab]")
_RIGHT_DOUBLE = re.compile("[\u0094\u201d\u00bb]")


def _latex_quotes(tok: str, left: bool) -> str:
    """Quote characters -> ``, `, '' or ' (PTB3 LaTeX style)."""
    tok = re.sub('"|&quot;', "``" if left else "''", tok)
    tok = re.sub("&apos;|'", "`" if left else "'", tok)
    tok = _LEFT_DOUBLE.sub("``", tok)
    tok = _RIGHT_DOUBLE.sub("''", tok)
    tok = _LEFT_SINGLE.sub("`", tok)
    return _RIGHT_SINGLE.sub("'", tok)


def _no_soft_hyphens(tok: str) -> str:
    return tok.replace("\u00ad", "")


def _number(tok: str) -> str:
    return re.sub("[\u00ad\u066c\u2009\u202f]", "", tok)


_CURRENCY = {"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$", "\u20ac": "$"}
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


def _parens(tok: str) -> str:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-")


# ---- the rules: (pattern with group "tok" and optional trailing context, action) ----
# An action gets the token text and returns (output tokens, how many characters of the token to push back).
Action = Callable[[str], "tuple[list[str], int]"]


def _emit(fn: Callable[[str], str] = lambda t: t) -> Action:
    return lambda tok: ([fn(tok)], 0)


def _pushback(n: int) -> Action:
    return lambda tok: ([tok[:-n]], n)


def _reduplicate(tok: str) -> tuple[list[str], int]:
    """Sentence-final abbreviation: the token keeps its period and the period is lexed again (as "." next)."""
    return [tok], 1


def _acronym(tok: str) -> tuple[list[str], int]:
    """Acronym before a sentence starter: "I." -> "I" then "."; longer ones keep their period and repeat it."""
    return ([tok[:-1]], 1) if len(tok) == 2 else ([tok], 1)


def _drop(tok: str) -> tuple[list[str], int]:
    return [], 0


_R: list[tuple[str, Action]] = [
    (r"(?P<tok>(?i:c\+\+|[cf]#))", _emit()),
    (r"(?P<tok>(?i:cannot|'twas))", _pushback(3)),
    (rf"(?P<tok>{_APOS}(?i:tis)|(?i:gonna|gotta|lemme|gimme|wanna|nno))", _pushback(2)),
    (rf"(?P<tok>{_SGML})", _emit(lambda t: re.sub("[ \r\n]", "\u00a0", t))),
    (r"(?P<tok>&(?i:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015])", _emit(lambda t: "--")),
    (r"(?P<tok>(?i:&amp;))", _emit(lambda t: "&")),
    (r"(?P<tok>&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);)", _emit()),
    (rf"(?P<tok>{_WORD})(?P<ctx>{_REDAUX})", _emit(_no_soft_hyphens)),
    (rf"(?P<tok>{_SWORD})(?P<ctx>{_SREDAUX})", _emit(_no_soft_hyphens)),
    (rf"(?P<tok>{_WORD})", _emit(_no_soft_hyphens)),
    (rf"(?P<tok>{_APOWORD})", _emit()),
    (rf"(?P<tok>y{_APOS})(?P<ctx>{_LET})", _emit()),
    (
        r"(?P<tok>(?i:ftp|svn|svn\+ssh|http|https|mailto)://[^ \t\n\f\r\"<>|(){}\[\]]+"
        r"[^ \t\n\f\r\"'<>|.!?(){},;:&\[\]-])",
        _emit(),
    ),
    (
        r"(?P<tok>(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}|(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+"
        r"(?i:com|net|org|edu))(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?)",
        _emit(),
    ),
    (
        r"(?P<tok>[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*"
        r"[^ \t\n\f\r\"<>|(){}\[\].,;:\u00A0]+)",
        _emit(),
    ),
    (rf"(?P<tok>[@\uFF20][a-zA-Z_][a-zA-Z_0-9]*|[#\uFF03]{_LET}+)", _emit()),
    (rf"(?P<tok>{_REDAUX})(?P<ctx>[^A-Za-z])", _emit(lambda t: _latex_quotes(t, False))),
    (rf"(?P<tok>{_SREDAUX})(?P<ctx>[^A-Za-z])", _emit(lambda t: _latex_quotes(t, False))),
    (rf"(?P<tok>{_DIG}{{1,2}}[-/]{_DIG}{{1,2}}[-/]{_DIG}{{2,4}})", _emit()),
    (rf"(?P<tok>{_NUMBER})", _emit(_number)),
    (r"(?P<tok>[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+))", _emit()),
    (
        rf"(?P<tok>(?:{_DIG}{{1,4}}[- \u00A0])?{_DIG}{{1,4}}(?:\\?/|\u2044){_DIG}{{1,4}})",
        _emit(lambda t: t.replace(" ", "\u00a0")),
    ),
    (r"(?P<tok>[\u00BC\u00BD\u00BE\u2153-\u215E])", _emit(lambda t: _FRACTIONS.get(t, t))),
    (
        rf"(?P<tok>-(?i:rrb|lrb|rcb|lcb|rsb|lsb)-|(?i:c\.d\.s|pro-|anti-|s(?:&|&amp;)p-500|s(?:&|&amp;)ls|cap{_APOS}n"
        rf"|c{_APOS}est))",
        _emit(lambda t: re.sub("(?i)&amp;", "&", t)),
    ),
    (rf"(?P<tok>{_THING3})", _emit()),
    (r"(?P<tok>[A-Z]*\$|#)", _emit()),
    (
        r"(?P<tok>[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AA\u20AC\u20B9\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6])",
        _emit(lambda t: _CURRENCY.get(t, t)),
    ),
    (rf"(?P<tok>{_ACRO}\.)(?P<ctx>{_SPACENL}+(?:{_SENT_STARTER}|{_SGML})(?:{_SPACENL}|[?!]))", _acronym),
    (rf"(?P<tok>{_ABBREV3})(?P<ctx>{_SPACENL}?{_DIG})", _emit()),
    (rf"(?P<tok>(?i:so|no)\.)(?P<ctx>{_SPACENL}+(?i:africa|korea|cal))", _emit()),
    (rf"(?P<tok>(?:pt[eyEY]|(?i:co))\.)(?P<ctx>{_SPACE}(?i:ltd|lim))", _emit()),
    (rf"(?P<tok>{_ABBREV1})(?P<ctx>{_SPACENL}(?:{_SPACENL}|[^\W\d_a-z]|{_SGML}))", _reduplicate),
    (rf"(?P<tok>{_ABBREV1})(?P<ctx>[\s\S][\s\S])", _emit()),
    (rf"(?P<tok>{_ABBREV1})", _reduplicate),
    (rf"(?P<tok>{_ABBREV4}\.)", _emit()),
    (rf"(?P<tok>{_ABBREV4})(?P<ctx>{_SPACE})", _emit()),
    (rf"(?P<tok>{_ACRO})(?P<ctx>{_SPACENL})", _emit()),
    (rf"(?P<tok>{_APOS}[0-9][0-9])(?P<ctx>{_SPACENL})", _emit()),
    (rf"(?P<tok>{_WORD}\.)(?P<ctx>{_INSENTP})", _emit(_no_soft_hyphens)),
    (
        r"(?P<tok>(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[- \u00A0])?[0-9]{2,4}[- \u00A0])[0-9]{3,4}"
        r"[- \u00A0]?[0-9]{3,5})",
        _emit(lambda t: _parens(t.replace(" ", "\u00a0"))),
    ),
    (rf"(?P<tok>{_DBLQUOT})(?P<ctx>[^\W_]|\$)", _emit(lambda t: _latex_quotes(t, True))),
    (rf"(?P<tok>{_DBLQUOT})", _emit(lambda t: _latex_quotes(t, False))),
    (r"(?P<tok>\x7f)", _drop),
    (r"(?P<tok><|&lt;)", _emit(lambda t: "<")),
    (r"(?P<tok>>|&gt;)", _emit(lambda t: ">")),
    (r"(?P<tok>[<>]?[:;=][-o*']?[()DPdpO\\{@|\[\]])(?P<ctx>[^A-Za-z0-9])", _emit(_parens)),
    (r"(?P<tok>[{}\[\]()])", _emit(lambda t: _BRACKETS[t])),
    (r"(?P<tok>-+)", _emit(lambda t: "--" if 3 <= len(t) <= 4 else t)),
    (r"(?P<tok>\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026])", _emit(lambda t: "...")),
    (r"(?P<tok>@+|#+|_+)", _emit()),
    (r"(?P<tok>\*+|(?:\\\*){1,3})", _emit()),
    (rf"(?P<tok>{_INSENTP})", _emit()),
    (r"(?P<tok>[?!]+)", _emit()),
    (r"(?P<tok>[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002])", _emit()),
    (r"(?P<tok>=+)", _emit()),
    (r"(?P<tok>/)", _emit()),
    (rf"(?P<tok>{_HTHING})", _emit(_no_soft_hyphens)),
    (rf"(?P<tok>{_HTHING}\.)(?P<ctx>{_INSENTP})", _emit(_no_soft_hyphens)),
    (rf"(?P<tok>{_THING})", _emit()),
    (rf"(?P<tok>{_THING}\.)(?P<ctx>{_INSENTP})", _emit()),
    (rf"(?P<tok>{_THINGA}\.?)(?P<ctx>{_INSENTP})", _emit(lambda t: re.sub("(?i)&amp;", "&", t))),
    (rf"(?P<tok>{_THINGA})", _emit(lambda t: re.sub("(?i)&amp;", "&", t))),
    (r"(?P<tok>')(?P<ctx>[A-Za-z][^ \t\n\r\u00A0])", _emit(lambda t: _latex_quotes(t, True))),
    (rf"(?P<tok>{_QUOTES})", _emit(lambda t: _latex_quotes(t, False))),
    (rf"(?P<tok>{_REDAUX})", _emit(lambda t: _latex_quotes(t, False))),
    (rf"(?P<tok>{_SREDAUX})", _emit(lambda t: _latex_quotes(t, False))),
    (r"(?P<tok><<|>>)", _emit()),
    (rf"(?P<tok>{_MISCSYMBOL})", _emit()),
    (r"(?P<tok>[\u0086\u0087\u0089\u0095\u0098\u0099])", _emit()),
    (rf"(?P<tok>\x00|{_SPACE}+|[\u200B\u200E\u200F\uFEFF]|{_NL}|&nbsp;)", _drop),
]
_RULES = [(re.compile(pattern), action) for pattern, action in _R]

# Fast path: spaces, and a plain ASCII word or a lone sentence mark followed by a space or the line end, are always
# skipped or their own token (no rule matches longer there); the exceptions are the assimilations ("cannot" ->
# "can not") and a "." that starts a spaced ellipsis (". . .").
_FAST = re.compile(r" +|[A-Za-z]+(?=[ \n])|[,;:?!](?=[ \n])|\.(?=\n| [^.])")
_SPLIT_WORDS = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna", "nno"])


def ptb_tokens(text: str, following: str | None = None) -> list[str]:
    """Raw PTB tokens of one line (original case, punctuation kept), as the 3.4.1 lexer returns them.

    `following` is the next line of the stream (None: this line ends the input). The Java tokenizer lexes all
    captions as one text, so a line's last token can depend on how the next line starts ("fig." before a digit).
    """
    # Characters outside the BMP are two UTF-16 units in Java, neither a letter: the lexer deletes them (they still
    # separate tokens, as the control character that stands in for them here does).
    stop = len(text)
    if following is not None:
        text = f"{text}\n{following}"
    text = _ASTRAL.sub("\x01", text)
    out: list[str] = []
    pos = 0
    while pos < stop:
        fast = _FAST.match(text, pos)
        if fast and fast.group().lower() not in _SPLIT_WORDS:
            if fast.group()[0] != " ":
                out.append(fast.group())
            pos = fast.end()
            continue
        best, best_len = None, 0
        for pattern, action in _RULES:
            m = pattern.match(text, pos)
            if m and m.end() - pos > best_len:  # longest match incl. trailing context; ties keep the earlier rule
                best, best_len = (m, action), m.end() - pos
        if best is None:  # "untokenizable" in the Java lexer: deleted
            pos += 1
            continue
        m, action = best
        tokens, pushback = action(m.group("tok"))
        out.extend(t for t in tokens if t)  # a lone soft hyphen is a word that vanishes
        pos = m.start("tok") + len(m.group("tok")) - pushback
    return out


def clean_line(caption: str) -> str:
    """A caption as one line: every character Java treats as a line break becomes a space.

    pycocoevalcap replaces only "\\n"; a "\\r" or U+2028 in a caption would shift every later caption onto the
    wrong image there. Both the Java and the Python path here keep one caption per line.
    """
    return caption.translate(_LINE_BREAK_TABLE)


def tokenize_lines(captions: Sequence[str]) -> list[str]:
    """Captions lexed as one stream, one per line, as pycocoevalcap's Java call does; each result is what the
    scorers see: PTB tokens, lowercased, pycocoevalcap's PUNCTUATIONS removed, joined by spaces."""
    lines = [clean_line(c) for c in captions]
    out = []
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else None
        words = (tok.lower() for tok in ptb_tokens(line, following))
        out.append(" ".join(w for w in words if w not in PUNCTUATIONS))
    return out


def tokenize(captions: Mapping[K, Sequence[str]]) -> dict[K, list[str]]:
    """{id: [caption, ...]} -> {id: [tokenized caption, ...]}: pycocoevalcap's PTBTokenizer.tokenize, in Python
    (same stream order: ids in dict order, each id's captions in list order)."""
    flat = tokenize_lines([c for caps in captions.values() for c in caps])
    out: dict[K, list[str]] = {}
    i = 0
    for key, caps in captions.items():
        out[key] = flat[i : i + len(caps)]
        i += len(caps)
    return out
