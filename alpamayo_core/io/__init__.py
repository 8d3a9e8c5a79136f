"""Model folders on disk: released config.json parsing, sharded safetensors, loading and saving."""
