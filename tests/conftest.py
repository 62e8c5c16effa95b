"""Tiny models and tokenizers built in code: no downloads anywhere in the tests."""

from __future__ import annotations

import socket

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

torch.set_num_threads(1)  # tiny models: thread sync costs more than it saves, worse on a busy machine

CHARS = list("0123456789+-*/=#()\n :QA?.,!;<>abcdefghijklmnopqrstuvwxyzTSEP")
CORPUS = [
    "Q: 7-3*4+2=?\n3*4=12\n7-12=-5\n-5+2=-3\n#### -3",
    "Step 1: add the numbers. Step 2: check the answer is right.\nThe answer is 42",
    "first we compute the sum; then the product. so the answer is 7.\n\nfinal line\n",
] * 20


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(CHARS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style) trained on a few lines: multi-character tokens, merged newlines."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_llama(vocab_size: int, seed: int = 0, context: int = 512) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(vocab_size: int, seed: int = 0, context: int = 512) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=context, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(cfg).eval()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for an app the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save(model, tok, folder) -> str:
    """Write a model and its tokenizer as one checkpoint folder (what the app and load_policy open)."""
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def char_tok():
    return char_tokenizer()


@pytest.fixture(scope="session")
def bpe_tok():
    return bpe_tokenizer()


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def model_and_tok(request, char_tok, bpe_tok):
    """Tiny Llama with the character tokenizer, tiny GPT-2 with the byte-level BPE."""
    if request.param == "llama":
        return tiny_llama(len(char_tok)), char_tok
    return tiny_gpt2(len(bpe_tok)), bpe_tok
