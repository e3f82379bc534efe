"""The conversion engine: microscope exports (folders of TIFFs) into plates."""
