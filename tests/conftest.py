import pytest
import torch

from kimi_mini.config import ModelConfig
from kimi_mini.policy import build_policy
from kimi_mini.tokenizer import build_char_tokenizer

torch.set_num_threads(1)  # deterministic, and the fastest for these tiny models on 2 cores

TINY = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)


@pytest.fixture
def tiny_config():
    return TINY


@pytest.fixture
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture
def tiny_policy(tokenizer):
    torch.manual_seed(0)
    return build_policy(TINY, tokenizer)
