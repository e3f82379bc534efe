"""The plate storage format: well-chunked OME-Zarr plates on disk (no napari, Qt or conversion)."""
