"""Offline Qwen-style base tokenizers for tests and tiny checkpoints (no Hugging Face Hub).

* `tiny_base_tokenizer()`: a byte-level BPE trained on a small built-in corpus of driving
  sentences, with the Qwen3-VL special tokens, as `Qwen2TokenizerFast` with a Qwen3-VL-style
  chat template. A few hundred entries: for tiny random-init models.
* `released_layout_base_tokenizer()`: the Qwen3-VL base vocabulary's id LAYOUT (151,669
  entries: byte tokens, fillers, and the Qwen special tokens at their real ids 151643..), built
  from a vocabulary dict without merges. Extending it with the released `TokenConfig` gives the
  released ids (155681 etc.), so tests can check them without the real tokenizer. It encodes
  text byte by byte; it is not the real Qwen tokenizer.

Extend either with `alpamayo_core.model.vocabulary.extend_tokenizer`.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2TokenizerFast

from alpamayo_core.inputs.prompt import QWEN3_VL_CHAT_TEMPLATE
from alpamayo_core.model.config import QWEN3_VL_BASE_TOKENIZER_LEN

#: The Qwen3-VL base special/added tokens in id order from 151643 (`special` flag second).
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
)

_DRIVING_CORPUS = (
    "The ego vehicle is driving straight on a two-lane road at moderate speed.",
    "A pedestrian is crossing ahead, so the car slows down and yields.",
    "The traffic light turns red; the vehicle decelerates and stops before the stop line.",
    "The light is green and the lane is clear, so keep the current speed.",
    "A cyclist is on the right side; keep a safe lateral distance while passing.",
    "The lead vehicle brakes suddenly, so the ego car brakes to keep a safe gap.",
    "Turn left at the intersection after the oncoming traffic has passed.",
    "Merge into the left lane because the right lane ends ahead.",
    "A construction zone narrows the road; nudge left and reduce speed.",
    "The car ahead is parked; change lanes to the left to overtake it safely.",
    "Follow the curve of the road to the right while maintaining lane center.",
    "Stop at the stop sign, check for cross traffic, then proceed through the junction.",
    "Accelerate gently onto the highway and match the speed of surrounding traffic.",
    "A bus is pulling out from the bus stop; slow down and let it merge.",
    "Keep distance to the truck in front because visibility is limited.",
    "Yield to the emergency vehicle approaching from behind by moving to the right.",
)


def _wrap(tok: Tokenizer) -> Qwen2TokenizerFast:
    """A `Qwen2TokenizerFast` with the Qwen special tokens appended in their id order."""
    base = len(tok.get_vocab())
    wrapped = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None,
                                 eos_token=None, pad_token=None,
                                 chat_template=QWEN3_VL_CHAT_TEMPLATE)
    for text, special in QWEN_ADDED_TOKENS:  # one by one: keep the released id order
        wrapped.add_tokens([text], special_tokens=special)
    wrapped.eos_token, wrapped.pad_token = "<|im_end|>", "<|endoftext|>"
    wrapped.padding_side = "left"
    expected = base + len(QWEN_ADDED_TOKENS)
    if len(wrapped) != expected or wrapped.convert_tokens_to_ids("<|endoftext|>") != base:
        raise ValueError(f"Qwen special tokens were not appended in order ({len(wrapped)} "
                         f"entries, expected {expected})")
    return wrapped


def _byte_level(model: models.Model) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def tiny_base_tokenizer(vocab_size: int = 512) -> Qwen2TokenizerFast:
    """A small byte-level BPE (deterministic) trained on driving sentences, Qwen specials."""
    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(_DRIVING_CORPUS) * 4, trainer=trainer)
    return _wrap(tok)


def released_layout_base_tokenizer() -> Qwen2TokenizerFast:
    """A base tokenizer with the Qwen3-VL id layout (151,669 entries, specials at 151643..)."""
    n_regular = QWEN3_VL_BASE_TOKENIZER_LEN - len(QWEN_ADDED_TOKENS)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({f"\u0120filler{i}": i for i in range(len(alphabet), n_regular)})
    tok = _byte_level(models.BPE(vocab=vocab, merges=[]))
    return _wrap(tok)
