"""PAR (parallelized autoregressive, LlamaGen-derived): ``par-tiny`` and released ``par``."""
