"""Writing: sources (arrays, OME-Zarr, NIfTI, .ims), the Imaris writer, conversions out of .ims,
dask clusters, example files. Imports `store`, `access` and `format`.
"""
