"""SAEs: the trained-here store, the huggingface_hub cache and loaders for every published format."""
