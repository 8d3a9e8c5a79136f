"""What the model reads: image preprocessing, prompt layout, history tokens, text extraction,
and offline tokenizers for tests."""
