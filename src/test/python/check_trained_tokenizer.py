"""One-off check that a tokenizer.json written by the Java BpeTrainer loads in Hugging Face tokenizers and gives
the ids the Java Tokenizer gives: records HF's ids and decodes for the golden texts in
src/test/resources/tokenizer/trainer/golden.json, which TokenizerGoldenTest compares with the Java side.

Make the file first: the Java test BpeTrainerTest writes target/trained-tokenizer.json (trained on
src/test/resources/tokenizer/trainer/corpus.txt, vocab 400, min frequency 2, specials <|endoftext|> <s>, BOS <s>);
copy it to src/test/resources/tokenizer/trainer/tokenizer.json, then run
OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/check_trained_tokenizer.py
"""
import json
import os

from tokenizers import Tokenizer

import make_tokenizer_golden as g

path = os.path.join(g.OUT, "trainer", "tokenizer.json")
tok = Tokenizer.from_file(path)
spec = json.load(open(path, encoding="utf-8"))
assert tok.get_vocab_size(with_added_tokens=True) == 400, tok.get_vocab_size()
assert len(spec["model"]["merges"]) == 400 - 2 - 256
# the model round-trips through HF unchanged: same vocab and merges when HF writes it back
again = json.loads(tok.to_str())
assert again["model"]["vocab"] == spec["model"]["vocab"]
assert [list(m) for m in again["model"]["merges"]] == spec["model"]["merges"]
g.golden(None, "trainer")
print("HF loaded", path, "and wrote", os.path.join(g.OUT, "trainer", "golden.json"))
