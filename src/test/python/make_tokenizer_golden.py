"""Builds small tokenizer.json files of the kinds Llama checkpoints use, offline, with the
Hugging Face `tokenizers` library, and records the ids and decoded strings it gives.

Run: OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_tokenizer_golden.py
Writes src/test/resources/tokenizer/{gpt2,llama3,llama2,metaspace}/tokenizer.json and golden.json.

The HF trainer breaks frequency ties in hash order, so a rerun may give other (equally valid) llama2/metaspace
files; tokenizer.json and golden.json are always written together.

Kinds:
  gpt2      ByteLevel pre-tokenizer (GPT-2 regex), ByteLevel decoder, merges as "a b" strings
  llama3    Split(Llama-3 regex) + ByteLevel(use_regex=false), ignore_merges, <|begin_of_text|> template,
            merges as ["a","b"] pairs
  llama2    the real Llama-2 layout: normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer,
            byte_fallback with <0xNN> tokens, <unk>/<s>/</s>, decoder Replace/ByteFallback/Fuse/Strip
  metaspace the newer Llama/Mistral conversion: Metaspace(prepend_scheme="first", split=false) pre-tokenizer
"""
import json
import os
import random

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers, Regex

OUT = os.path.join(os.path.dirname(__file__), "..", "resources", "tokenizer")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog didn't care; it's asleep.",
    "Tokenization splits text into pieces: words, sub-words, bytes and special tokens.",
    "I'm sure they'll say we've done it, and you'd agree. THEY'LL SAY IT'S DONE!",
    "def encode(self, text):\n    return [self.vocab[t] for t in text.split()]\n\n",
    "for (int i = 0; i < n; i++) {\n\tsum += x[i] * w[i];\n}\n",
    "Numbers: 12345, 3.14159, 2026-11-05, 1000000 and 42.",
    "Café, naïve, résumé, façade, Ångström, Straße, Øresund, Łódź.",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Emoji: 👍 😀 🎉 👨‍👩‍👧‍👦 🏳️‍🌈 and more 🚀🚀.",
    "Multiple   spaces,\ttabs\t\tand\n\nnewlines\r\n are whitespace.",
    "Llama models read text as tokens; the tokenizer turns tokens back into text.",
    "Mixture of experts routes each token to a few experts out of many.",
    "    indented code\n        more indented\n",
    "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم",
]


def corpus(repeat):
    lines = []
    for r in range(repeat):
        for i, line in enumerate(CORPUS):
            lines.append(line if (r + i) % 3 else line.lower())
    return lines


GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# whole words added to the vocabulary without merges: used only when ignore_merges is set
EXTRA_BYTE_LEVEL_WORDS = ["ĠTokenization", "Ġzebra", "Ġquokka"]


def byte_level(kind):
    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|endoftext|>"]
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(4), trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for w in EXTRA_BYTE_LEVEL_WORDS:
        if w not in vocab:
            vocab[w] = len(vocab)
    added = []
    for s in specials:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        vocab[s] = len(vocab)
    spec["added_tokens"] = added
    if kind == "gpt2":
        spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]  # old "a b" form
        spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                  "use_regex": True}
    else:
        spec["model"]["ignore_merges"] = True
        bos = vocab["<|begin_of_text|>"]
        spec["post_processor"] = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos],
                                                      "tokens": ["<|begin_of_text|>"]}}}]}
    return spec


def sentencepiece(kind):
    # train with a Metaspace pre-tokenizer so that merges stay inside words, then lay the model out
    # as Llama-2 does: <unk> <s> </s>, then the 256 byte tokens, then the pieces
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=500, min_frequency=2, special_tokens=[], limit_alphabet=90)
    tok.train_from_iterator(corpus(4), trainer)
    trained = json.loads(tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    # the trainer numbers its alphabet in hash order: sort single characters by code point to keep files stable
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: (len(kv[0]) > 1, kv[1] if len(kv[0]) > 1 else ord(kv[0]))):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [" ".join(m) for m in trained["merges"]]},
    }
    if kind == "llama2":
        spec["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    else:
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                                 "split": False}
        spec["model"]["merges"] = trained["merges"]  # pair form
    return spec


TEXTS = [
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Tokenization of experts and whitespace",
    "A Tokenization of a zebra and a quokka",
    " leading space",
    "  two leading spaces",
    "trailing spaces   ",
    "a  b   c    d",
    "tabs\tand\t\ttabs",
    "new\nline\n\nand\r\nwindows\r\n",
    "\n\n\n",
    "   \n   \t  x",
    "I'M SURE THEY'LL SAY WE'VE DONE IT, YOU'D AGREE. It's isn't 'quoted'",
    "DON'T Can'T she'S",
    "def f(x):\n    return x ** 2  # square\n",
    "if (a&&b||c) { return a[i]->b; } // ok",
    "Numbers 1 12 123 1234 12345 123456 1234567 3.14159 0x1F",
    "Café naïve résumé Ångström Straße Łódź",
    "e\u0301 combining accent, Å vs A\u030a",
    "日本語のテキスト 中文文本 한국어",
    "Emoji 👍😀🎉 family 👨‍👩‍👧‍👦 flag 🏳️‍🌈 rocket🚀",
    "skin tone 👋🏽 and keycap 1️⃣",
    "replacement \ufffd char \ufffd\ufffd here",
    "<s>Hello</s> world <s>",
    "text <|begin_of_text|>inside<|end_of_text|> and <|eot_id|>",
    "almost special <s <| begin |> </s",
    "<|endoftext|> gpt2 end <|endoftext|>",
    "non\u00a0breaking\u2003em\u3000ideographic space",
    "Привет, мир! Γειά σου Κόσμε! مرحبا",
    "mixed123abc  456def!!!???...",
    "     ",
    "a",
    "\u0000 control \u0007 chars \u001b[0m",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛",
    "x \n y  \n\n  z \t\n",
    "end with spaces and newline   \n",
    "  \u00a0 a\u2028b\u0085c",
    "' s 'S ’s it''s rock'n'roll O'NEIL'S",
    "Arabic-Indic ١٢٣٤٥ superscript x² ½ ⅷ",
    "नमस्ते दुनिया and ภาษาไทย",
    "12345678901234567890",
    "a\r\n\r\nb\r\rc",
    "!!!???...---___===+++",
]


def golden(spec, name):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    if spec is not None:  # None: the tokenizer.json there was made elsewhere (the Java trainer)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False, indent=None)
    tok = Tokenizer.from_file(path)
    cases = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "ids_no_special": plain,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    # decode-only cases: random ids over the whole vocabulary and byte sequences that are not UTF-8
    rng = random.Random(1234)
    size = tok.get_vocab_size(with_added_tokens=True)
    id_lists = [[rng.randrange(size) for _ in range(rng.randrange(1, 25))] for _ in range(30)]
    vocab = tok.get_vocab(with_added_tokens=True)
    if spec is not None and spec["model"]["byte_fallback"]:
        byte_id = lambda b: vocab["<0x%02X>" % b]
    else:
        from_byte = bytes_to_unicode()
        byte_id = lambda b: vocab[from_byte[b]]
    for seq in ([0xE2, 0x82], [0xFF], [0xF0, 0x9F, 0x98], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0x80, 0x41, 0xE9],
                [0xF0, 0x9F, 0x98, 0x80], [0xE2, 0x82, 0xAC, 0xE2]):
        word = [byte_id(b) for b in seq]
        id_lists.append(word)
        id_lists.append(tok.encode("ab", add_special_tokens=False).ids + word + tok.encode(" cd", add_special_tokens=False).ids)
    decode_cases = [{"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                     "decoded_skip": tok.decode(ids, skip_special_tokens=True)} for ids in id_lists]
    with open(os.path.join(folder, "golden.json"), "w", encoding="utf-8") as f:
        json.dump({"vocab_size": size, "cases": cases, "decode_cases": decode_cases}, f, ensure_ascii=False,
                  indent=0)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


if __name__ == "__main__":
    golden(byte_level("gpt2"), "gpt2")
    golden(byte_level("llama3"), "llama3")
    golden(sentencepiece("llama2"), "llama2")
    golden(sentencepiece("metaspace"), "metaspace")
    print("wrote", OUT)
