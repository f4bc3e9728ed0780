"""Code generated from proto/courier/v1 by scripts/generate; never edited by hand."""
