"""The fronts: the `ims-store` command line, the HTTP server, the napari reader, the xarray
backend, summaries. Import every layer below.
"""
