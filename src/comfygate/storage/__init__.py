"""Where outputs, input images and cached results live: a directory under DATA_DIR
(``local``) or any S3-compatible service (``s3``), behind ``base.OutputStorage``;
``resolve.open_storage`` picks one from the settings."""
