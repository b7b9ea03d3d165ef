"""Imaris format knowledge: attribute text, the layout model, links, geometry, pyramid and block-
shape rules, the HDF5 filter table, the chunk index. Imports `ims_store.errors` only (and h5py,
numpy).
"""
