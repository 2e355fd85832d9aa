from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from kimi_mini.tokenizer import CHARSET, build_char_tokenizer


def test_vocab_layout():
    tok = build_char_tokenizer()
    assert len(tok) == 4 + len(CHARSET)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.padding_side == "left"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=CHARSET, max_size=80))
def test_round_trip_one_id_per_character(text):
    tok = build_char_tokenizer()
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_unknown_characters_map_to_unk():
    tok = build_char_tokenizer()
    assert tok("x?", add_special_tokens=False)["input_ids"] == [tok.unk_token_id] * 2


def test_save_and_load(tmp_path):
    tok = build_char_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "4 3 5 -> 17\n4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.padding_side == "left"


def test_batch_pads_on_the_left():
    tok = build_char_tokenizer()
    batch = tok(["1 2 3 -> 6\n", "1 2 3 -> 16\n"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id
    assert batch["attention_mask"][0][:2] == [0, 1]
