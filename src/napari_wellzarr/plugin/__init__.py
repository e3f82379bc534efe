"""The napari plugin: npe2 hooks and the plate views, mosaics and layers they build."""
