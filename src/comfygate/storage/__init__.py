"""Where outputs live: a local directory under DATA_DIR (S3-compatible storage later)."""
