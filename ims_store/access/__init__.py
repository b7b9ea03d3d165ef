"""Where bytes come from and go to: local and remote (fsspec) files, the block cache, the read-
ahead, atomic outputs. Imports `format`.
"""
