"""The character-level tokenizer; it lives in ``liftpeft.peft_integration.char_tokenizer`` (Hugging Face code)."""

from liftpeft.peft_integration.char_tokenizer import (
    PAD_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    build_char_tokenizer,
    char_vocab,
    save_char_tokenizer,
)

__all__ = [
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "UNK_TOKEN",
    "build_char_tokenizer",
    "char_vocab",
    "save_char_tokenizer",
]
