#!/usr/bin/env python3
"""Reference outputs for tests/test_tok.c, from tiktoken and the seeds' tokenizers.

Run from anywhere: python3 tests/ref/tok_golden.py   (needs: pip install tiktoken)

gpt2: a tiktoken Encoding is built from the BUNDLED tables (data/gpt2/encoder.json
and vocab.bpe, no network) exactly as tiktoken builds its "gpt2" encoding: the
mergeable ranks come from encoder.json through GPT-2's byte decoder, checked
against the merge order of vocab.bpe; the split pattern is tiktoken's own gpt2
pattern (tiktoken_ext.openai_public.r50k_pat_str, checked to agree with the
original GPT-2 pattern on every case); <|endoftext|> = 50256.

Writes:
  tests/golden/tok/gpt2_cases.txt    texts and their ids
  tests/golden/tok/gpt2_corpora.txt  both bundled corpora: count, first/last ids,
                                     SHA-256 of each block of ids; long
                                     synthetic runs: count, first/last, SHA-256
  tests/golden/tok/classes.txt       the letter / number / whitespace classes of
                                     tiktoken's regex engine, as code point ranges
  tests/golden/tok/simple_cases.txt  char and word tokenizer cases (the seeds'
                                     SimpleTokenizerV2, LLMs from scratch ch. 2)
  runtime/tok_unicode.c              the same classes as C tables, for the
                                     runtime's pre-tokenizer regex
"""
import hashlib
import json
import os
import random
import re
import struct
import sys
import unicodedata

import tiktoken
import tiktoken_ext.openai_public as openai_public

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLD = os.path.join(ROOT, "tests", "golden", "tok")
EOT = "<|endoftext|>"
ORIGINAL_GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
BLOCK = 4096  # ids per hashed block in gpt2_corpora.txt


def path(rel):
    return os.path.join(ROOT, rel)


def read_text(rel):
    with open(path(rel), "rb") as f:
        return f.read().decode("utf-8")


def gpt2_byte_decoder():
    """GPT-2's printable-unicode stand-in for each byte, inverted."""
    keep = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    dec = {chr(b): b for b in keep}
    n = 0
    for b in range(256):
        if b not in keep:
            dec[chr(256 + n)] = b
            n += 1
    return dec


def bundled_ranks():
    dec = gpt2_byte_decoder()
    with open(path("data/gpt2/encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    ranks = {bytes(dec[c] for c in k): v for k, v in encoder.items() if k != EOT}
    # The merge order of vocab.bpe must equal the ranks (tiktoken relies on it).
    with open(path("data/gpt2/vocab.bpe"), encoding="utf-8") as f:
        merges = [tuple(l.split()) for l in f.read().split("\n")[1:-1]]
    for i, (a, b) in enumerate(merges):
        assert ranks[bytes(dec[c] for c in a + b)] == 256 + i, (a, b)
    assert len(ranks) == 50256 and encoder[EOT] == 50256
    return ranks


def encoding(pat):
    return tiktoken.Encoding(name="gpt2-bundled", pat_str=pat, mergeable_ranks=bundled_ranks(),
                             special_tokens={EOT: 50256}, explicit_n_vocab=50257)


# ---- the regex classes, read back from tiktoken's own regex engine ---------

def probe_class(pat):
    """Code points the pattern matches as one character: an Encoding over the
    256 single bytes drops unmatched text, so the decoded output is exactly the
    matching characters."""
    enc = tiktoken.Encoding(name="probe", pat_str=pat,
                            mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={})
    s = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    out = enc.decode_bytes(enc.encode_ordinary(s)).decode("utf-8")
    return sorted(ord(c) for c in out)


def to_ranges(cps):
    r = []
    for c in cps:
        if r and r[-1][1] == c - 1:
            r[-1][1] = c
        else:
            r.append([c, c])
    return r


# The Unicode version of tiktoken's regex engine, checked below by a letter
# that version added (U+10D50 GARAY CAPITAL LETTER A, Unicode 16.0).
TIKTOKEN_UNICODE = "16.0.0"


def c_ranges(lines, cname, r):
    lines.append("const uint32_t tok_uni_%s[][2] = {" % cname)
    row = " "
    for a, b in r:
        c = "{0x%X, 0x%X}" % (a, b)
        if len(row) + len(c) + 2 > 100:
            lines.append(row.rstrip())
            row = " "
        row += " " + c + ","
    lines.append(row.rstrip())
    lines.append("};")
    lines.append("const size_t tok_uni_n_%s = sizeof tok_uni_%s / sizeof tok_uni_%s[0];" % (cname, cname, cname))
    lines.append("")


def write_classes(classes):
    with open(os.path.join(GOLD, "classes.txt"), "w") as f:
        f.write("# Character classes of tiktoken %s's regex engine (\\p{L}, \\p{N}, \\s): one range a line\n"
                % tiktoken.__version__)
        for name, r in classes:
            f.write("class %s %d\n" % (name, len(r)))
            for a, b in r:
                f.write("%X %X\n" % (a, b))
    sets = {name: set(c for a, b in r for c in range(a, b + 1)) for name, r in classes}
    assert 0x10D50 in sets["L"], "tiktoken's Unicode is not %s" % TIKTOKEN_UNICODE
    # What tiktoken adds to the categories of an older Unicode (this Python's):
    # with PCRE2 tables of a version between the two, \p{L} plus these ranges
    # is tiktoken's class exactly, as long as nothing left the category.
    base = unicodedata.unidata_version
    added = {}
    for name, pre in (("L", "L"), ("N", "N")):
        old = set(c for c in range(0x110000) if unicodedata.category(chr(c)).startswith(pre))
        assert old <= sets[name], "a code point left category %s after Unicode %s" % (pre, base)
        assert all(unicodedata.category(chr(c)) == "Cn" for c in sets[name] - old)
        added[name] = to_ranges(sorted(sets[name] - old))
    lines = ["/* tok_unicode: the classes of the GPT-2 pre-tokenizer regex as code point",
             " * ranges: \\p{L}, \\p{N} and \\s exactly as tiktoken's regex engine has them",
             " * (Unicode %s general categories L and N, and White_Space), and the" % TIKTOKEN_UNICODE,
             " * letters and numbers assigned after Unicode %s. PCRE2's own \\p{L} and" % base,
             " * \\p{N} plus the latter are the same classes when PCRE2's tables are of a",
             " * version in between; otherwise the full ranges are used. (PCRE2's \\s",
             " * adds U+180E, so whitespace is always spelled out.)",
             " * Written by tests/ref/tok_golden.py (tiktoken %s). */" % tiktoken.__version__,
             '#include "tok_internal.h"', "",
             'const char tok_uni_version[] = "%s";' % TIKTOKEN_UNICODE,
             'const char tok_uni_base_version[] = "%s";' % base, ""]
    for name, r in classes:
        c_ranges(lines, {"L": "letter", "N": "number", "S": "space"}[name], r)
    c_ranges(lines, "letter_added", added["L"])
    c_ranges(lines, "number_added", added["N"])
    with open(path("runtime/tok_unicode.c"), "w") as f:
        f.write("\n".join(lines))


# ---- gpt2 cases -------------------------------------------------------------

def fixed_cases():
    c = []
    add = lambda name, text, special=0: c.append((name, text, special))
    add("hello", "Hello, world!")
    add("brief_special", "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.", 1)
    add("brief_nospecial", "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.", 0)
    add("eot_alone", EOT, 1)
    add("eot_alone_text", EOT, 0)
    add("eot_glued", "a<|endoftext|>b<|endoftext|><|endoftext|> <|endoftext|>\n", 1)
    add("eot_partial", "<|endoftext <|endoftext|x <|end", 1)
    add("contractions", "I'm can't we're they've he'll she'd it's o'clock rock'n'roll ''s '''")
    add("contractions_upper", "I'M CAN'T WE'RE THEY'VE HE'LL SHE'D IT'S 'S 'T 'RE 'VE 'M 'LL 'D 'Re 'rE")
    add("contractions_curly", "It\u2019s don\u2019t we\u2019re \u2018quoted\u2019 \u201cdouble\u201d")
    add("digits", "0 1 12 123 1234 12345 3.14159 -42 1e10 0x1F 12,345,678 2024-01-31 10:30pm")
    add("long_number", "9" * 300 + " " + "1234567890" * 20)
    add("ws_mixed", "a  b   c\t\td\n\ne \r\n f\u00a0g\u3000h\u2028i\u2029j\u0085k \u180e l\u200bm\u2003n\u202fo\u205fp\u1680q")
    add("ws_edges", "   leading and trailing   ")
    add("ws_only", " \t \n \r\n  \n\n\n ")
    add("ws_newlines", "line one\nline two\n\n\nline five\r\n\r\n  indented\n\tTabbed\n")
    add("ws_unicode_runs", "\u00a0\u00a0x \u3000\u3000y\u2028\u2028z  \u00a0 w \u00a0")
    add("ws_long_space", " " * 600 + "x" + " " * 300)
    add("ws_long_newline", "\n" * 600 + "end")
    add("ws_long_mixed", (" \t\n\r\u00a0" * 100) + "q")
    add("long_word", "a" * 2000)
    add("long_word2", "ab" * 400 + " " + "xyz" * 200)
    add("long_punct", "!" * 500 + " " + "=-" * 300 + "." * 333)
    add("cjk", "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002\u6211\u4eec\u53bb\u516c\u56ed\u5427\u3002")
    add("japanese", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3002")
    add("korean", "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4! \ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.")
    add("arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645! \u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629\u060c \u0661\u0662\u0663")
    add("hebrew", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd, \u05e2\u05d1\u05e8\u05d9\u05ea \u05d9\u05e4\u05d4.")
    add("devanagari", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e\u0964 \u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u0967\u0968\u0969")
    add("thai", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0e51\u0e52\u0e53")
    add("cyrillic", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0401\u043b\u043a\u0430 \u0438 \u0451\u0436\u0438\u043a. \u0423\u043a\u0440\u0430\u0457\u043d\u0430 \u0491")
    add("greek", "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5! \u1f08\u03b8\u1fc6\u03bd\u03b1\u03b9 \u03c2\u03c3")
    add("combining", "e\u0301 a\u0308 n\u0303 \u0301alone Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312\u036b \u0915\u093f \ufe0f\u20e3 1\u20e3")
    add("emoji", "\U0001f44b\U0001f30d \U0001f600\U0001f603 \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 "
                 "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f44d\U0001f3fd \U0001f1fa\U0001f1f8 \u2764\ufe0f #\ufe0f\u20e3 x\U0001f600y")
    add("symbols", "\u2318 \u2211 \u221a \u221e \u2260 \u00a9\u00ae\u2122 \u20ac100 \u00a35 \u00bd \u2153 \u2167 \u00b2\u00b3 \u2460\u2461")
    add("astral_letters", "\U00020000\U00020001 \U0001d400\U0001d41a \U00010400\U00010428 \U00031350\U000323af \U00010d50 \U00016d40")
    add("code_python", "def f(x):\n    return [i ** 2 for i in range(x) if i % 2 == 0]  # squares\n\n\nprint(f(10))\n")
    add("code_c", "int main(void) {\n\tfor (int i = 0; i < n; i++) {\n\t\tprintf(\"%d\\n\", a[i]);\n\t}\n\treturn 0;\n}\n")
    add("code_json", '{"key": [1, 2.5, -3e4], "s": "a\\"b", "n": null, "t": true}')
    add("code_html", "<div class=\"x\">&nbsp;<b>bold</b>&amp;</div>\n<!-- comment -->")
    add("mixed_case", "HELLO hello HeLLo hELLO camelCaseWord snake_case_word SCREAMING_CASE kebab-case")
    add("urls", "https://example.com/path?q=1&r=two#frag user@mail.example.org C:\\Windows\\path")
    add("control", "a\x00b\x01c\x1fd\x7fe\x1b[31mred\x1b[0m\x0bv\x0cf")
    add("single_chars", "a")
    add("single_space", " ")
    add("bom", "\ufeffBOM at start \ufeff inside")
    add("nonchars", "\ufffe\uffff\U0010ffff\U0001fffe \U000e0001\U000e0041 \U000f0000")
    return c


def boundary_case():
    """Characters on both sides of range edges of the classes, each set off
    by a letter, a digit, a space or punctuation so the pieces differ by class."""
    ctx = ["a", "1", " ", "!", ""]
    rng = random.Random(7)
    edges = []
    for name, r in CLASSES:
        for a, b in r:
            edges += [c for c in (a - 1, a, b, b + 1) if 0 <= c < 0x110000 and not 0xD800 <= c <= 0xDFFF]
    # A sample keeps the file small; tests/golden/tok/classes.txt checks every code point.
    return "".join(rng.choice(ctx) + chr(c) + rng.choice(ctx) for c in sorted(rng.sample(edges, 500)))


def random_cases():
    rng = random.Random(20240601)
    cases = []

    def any_cp():
        while True:
            c = rng.randrange(0x110000)
            if not 0xD800 <= c <= 0xDFFF:
                return chr(c)

    pools = [
        lambda: rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        lambda: rng.choice("0123456789"),
        lambda: rng.choice(" \t\n\r\u00a0\u3000\u2028\u0085\u180e"),
        lambda: rng.choice("'sStTrReEvVmMlLdD"),
        lambda: rng.choice("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"),
        lambda: chr(rng.randrange(0x80, 0x800)),
        lambda: chr(rng.randrange(0x800, 0xD800)),
        lambda: chr(rng.randrange(0xE000, 0x10000)),
        lambda: chr(rng.randrange(0x10000, 0x110000)),
        any_cp,
    ]
    for k in range(10):
        n = rng.randrange(200, 800)
        cases.append(("random_mix_%d" % k, "".join(rng.choice(pools)() for _ in range(n)), k % 3 == 0))
    for k in range(3):
        cases.append(("random_any_%d" % k, "".join(any_cp() for _ in range(300)), 0))
    for k in range(2):
        cases.append(("random_ascii_%d" % k, "".join(chr(rng.randrange(1, 128)) for _ in range(800)), 0))
    return cases


def hexsha(b):
    return hashlib.sha256(b).hexdigest()


def ids_bytes(ids):
    return struct.pack("<%di" % len(ids), *ids)


SYNTHETIC = [("a", 100000, ""), (" ", 100000, "x"), ("ab", 50000, " end"), ("\n", 50000, "x"),
             ("\u00e9", 30000, ""), (" \u00a0", 20000, "end"), ("9", 100000, ""), ("!?", 50000, "\r\n"),
             ("\U0001f600", 20000, "")]


def write_gpt2(enc, orig):
    cases = fixed_cases() + [("class_boundaries", boundary_case(), 0)] + random_cases()
    with open(os.path.join(GOLD, "gpt2_cases.txt"), "w") as f:
        f.write("# gpt2 ids from tiktoken %s; per case: name, allow_special, SHA-256 of the UTF-8 text,\n"
                "# the text as a JSON string, the ids\n" % tiktoken.__version__)
        for name, text, special in cases:
            allowed = "all" if special else set()
            ids = enc.encode(text, allowed_special=allowed, disallowed_special=())
            assert ids == orig.encode(text, allowed_special=allowed, disallowed_special=()), name
            assert enc.decode(ids) == text, name
            raw = text.encode("utf-8")
            f.write("case %s %d %s\n" % (name, 1 if special else 0, hexsha(raw)))
            f.write("text %s\n" % json.dumps(text, ensure_ascii=True))
            f.write("ids %s\n" % " ".join(map(str, ids)))
    print("gpt2_cases.txt: %d cases" % len(cases))
    with open(os.path.join(GOLD, "gpt2_corpora.txt"), "w") as f:
        f.write("# gpt2 ids of the bundled corpora (tiktoken %s, no special tokens): count, the first and\n"
                "# last 16 ids, SHA-256 of each block of %d ids as little-endian int32\n"
                % (tiktoken.__version__, BLOCK))
        for rel in ("data/the-verdict.txt", "data/tinyshakespeare.txt"):
            text = read_text(rel)
            ids = enc.encode_ordinary(text)
            assert ids == orig.encode_ordinary(text)
            assert enc.decode(ids) == text
            blocks = [hexsha(ids_bytes(ids[i:i + BLOCK])) for i in range(0, len(ids), BLOCK)]
            f.write("corpus %s %s %d %d %d\n" % (rel, hexsha(text.encode()), len(text), len(ids), BLOCK))
            f.write("first %s\n" % " ".join(map(str, ids[:16])))
            f.write("last %s\n" % " ".join(map(str, ids[-16:])))
            f.write("all %s\n" % hexsha(ids_bytes(ids)))
            for b in blocks:
                f.write("block %s\n" % b)
            print("%s: %d chars, %d tokens" % (rel, len(text), len(ids)))
        # Long runs: one huge piece each, the case for an efficient merge loop.
        for unit, n, tail in SYNTHETIC:
            text = unit * n + tail
            ids = enc.encode_ordinary(text)
            assert ids == orig.encode_ordinary(text)
            f.write("synthetic %s %d %s %d %s\n" % (json.dumps(unit), n, json.dumps(tail), len(ids),
                                                     hexsha(ids_bytes(ids))))
            f.write("first %s\n" % " ".join(map(str, ids[:16])))
            f.write("last %s\n" % " ".join(map(str, ids[-16:])))


# ---- char and word: the seeds' tokenizers -----------------------------------

class SimpleTokenizerV2:
    """LLMs from scratch, chapter 2, as in the seed notebooks."""

    def __init__(self, vocab):
        self.str_to_int = vocab
        self.int_to_str = {i: s for s, i in vocab.items()}

    def encode(self, text):
        preprocessed = re.split(r'([,.:;?_!"()\']|--|\s)', text)
        preprocessed = [item.strip() for item in preprocessed if item.strip()]
        preprocessed = [item if item in self.str_to_int else "<|unk|>" for item in preprocessed]
        return [self.str_to_int[s] for s in preprocessed]

    def decode(self, ids):
        text = " ".join([self.int_to_str[i] for i in ids])
        return re.sub(r'\s+([,.:;?!"()\'])', r'\1', text)


def word_items(text):
    items = re.split(r'([,.:;?_!"()\']|--|\s)', text)
    return [item.strip() for item in items if item.strip()]


def word_vocab(text):
    words = sorted(set(word_items(text)))
    words.extend(["<|endoftext|>", "<|unk|>"])
    return {w: i for i, w in enumerate(words)}


WORD_VOCAB_TEXT = ("Hello, world -- and--more---dashes. It's (quoted) \"text\": yes; no? _under_score_!\n"
                   "\u00e9t\u00e9 na\u00efve caf\u00e9 \u4e2d\u6587 \U0001f600 tab\there nbsp\u00a0sep "
                   "ideo\u3000space x\x1cy a\u180eb c\u200bd line\u2028sep nel\x85end\n")
WORD_CASES = [
    ("basic", "Hello, world. It's (quoted) text: yes; no?"),
    ("dashes", "and--more---dashes -- --- ----"),
    ("unknown", "completely unknown words, Hello!"),
    ("unicode_ws", "\u00e9t\u00e9\u3000caf\u00e9\u00a0na\u00efve\x1cx\x1dy\x85z\u2028w"),
    ("not_ws", "a\u180eb c\u200bd"),
    ("punct_runs", "((Hello)),.;:?!__\"\"''"),
    ("astral", "\U0001f600 \u4e2d\u6587 \U0001f600\U0001f600"),
]


def write_simple():
    out = []
    verdict = read_text("data/the-verdict.txt")
    shakes = read_text("data/tinyshakespeare.txt")
    for rel, text in (("data/the-verdict.txt", verdict), ("data/tinyshakespeare.txt", shakes)):
        v = word_vocab(text)
        ids = SimpleTokenizerV2(v).encode(text)
        out.append("wordcorpus %s %d %d %s" % (rel, len(v), len(ids), hexsha(ids_bytes(ids))))
        chars = sorted(set(text))
        cids = [chars.index(ch) for ch in chars]  # noqa: the ids of the vocabulary itself
        assert cids == list(range(len(chars)))
        idx = {ch: i for i, ch in enumerate(chars)}
        allc = [idx[ch] for ch in text]
        out.append("charcorpus %s %d %d %s" % (rel, len(chars), len(allc), hexsha(ids_bytes(allc))))
    v = word_vocab(WORD_VOCAB_TEXT)
    tok = SimpleTokenizerV2(v)
    out.append("wordvocab %d %s" % (len(v), json.dumps(WORD_VOCAB_TEXT)))
    for name, text in WORD_CASES:
        ids = tok.encode(text)
        out.append("word %s %s" % (name, json.dumps(text)))
        out.append("ids %s" % " ".join(map(str, ids)))
        out.append("decoded %s" % json.dumps(tok.decode(ids)))
    chars_text = "h\u00e9llo w\u00f6rld \U0001f600\u4e2d\n\t\x00~\U0010ffff"
    chars = sorted(set(chars_text))
    out.append("charvocab %d %s" % (len(chars), json.dumps(chars_text)))
    out.append("ids %s" % " ".join(str(chars.index(ch)) for ch in chars_text))
    with open(os.path.join(GOLD, "simple_cases.txt"), "w") as f:
        f.write("# char (sorted code points) and word (SimpleTokenizerV2) reference values\n")
        f.write("\n".join(out) + "\n")
    print("simple_cases.txt: %d word cases" % len(WORD_CASES))


def main():
    global CLASSES
    os.makedirs(GOLD, exist_ok=True)
    CLASSES = [("L", to_ranges(probe_class(r"\p{L}"))), ("N", to_ranges(probe_class(r"\p{N}"))),
               ("S", to_ranges(probe_class(r"\s")))]
    write_classes(CLASSES)
    enc = encoding(openai_public.r50k_pat_str)
    orig = encoding(ORIGINAL_GPT2_PAT)
    write_gpt2(enc, orig)
    write_simple()


if __name__ == "__main__":
    sys.exit(main())
