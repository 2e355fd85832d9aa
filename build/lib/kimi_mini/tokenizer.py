"""A character-level tokenizer as a real ``transformers`` tokenizer.

Built with the ``tokenizers`` library (a word-level model over single characters) and wrapped in
``PreTrainedTokenizerFast``, so it saves and loads with ``save_pretrained``/``from_pretrained`` like any
hub tokenizer, and pads on the left for batched generation.

Introduced in {ref}`ch1-tokenizer`.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = ["CHARSET", "SPECIAL_TOKENS", "build_char_tokenizer"]

#: Every character the task writes: digits, operators, punctuation, and the letters of "answer" and "vs".
CHARSET = string.digits + "+-*()=:,.!> \n" + "aenrsvw"
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}


def build_char_tokenizer(charset: str = CHARSET) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` with one id per character of ``charset`` and four special tokens.

    Ids 0-3 are ``<pad> <bos> <eos> <unk>``; characters follow in ``charset`` order. Unknown characters
    map to ``<unk>``. Encoding puts ``<bos>`` first; decoding joins characters with no separator.
    """
    specials = list(SPECIAL_TOKENS.values())
    chars = list(dict.fromkeys(charset))  # keep order, drop repeats
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one piece per character
    core.decoder = decoders.Fuse()
    bos = SPECIAL_TOKENS["bos_token"]
    core.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, padding_side="left", **SPECIAL_TOKENS)
    return tok
