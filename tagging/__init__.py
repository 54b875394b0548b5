"""Pure tagging engine: taxonomy types, normaliser, tokenizer, matcher and policy. Imports nothing else of Kebiao."""
