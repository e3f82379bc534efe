"""Turning whatever array a caller hands us into a host (NumPy) array."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_wellzarr.errors import WellDataError

__all__ = ["to_host"]


def to_host(data: object, what: str = "data") -> np.ndarray[Any, Any]:
    """Return ``data`` as a NumPy array in host memory.

    Accepts NumPy arrays, CuPy arrays (``.get()``), PyTorch tensors (``.cpu()``),
    anything with ``__dlpack__`` on the CPU (JAX, TensorFlow, ...) and anything with
    ``__array__`` (dask, zarr, xarray ...).  GPU arrays are copied to the host.
    """
    if isinstance(data, np.ndarray):
        return data
    module = type(data).__module__.split(".")[0]
    if module == "cupy":
        return np.asarray(data.get())  # type: ignore[attr-defined]
    if module == "torch":
        return np.asarray(data.detach().cpu().numpy())  # type: ignore[attr-defined]
    if module in ("jax", "jaxlib"):
        # np.asarray pulls a JAX array from any device to the host.
        return np.asarray(data)
    if hasattr(data, "__array__"):
        return np.asarray(data)
    if hasattr(data, "__dlpack__"):
        try:
            return np.from_dlpack(data)
        except (RuntimeError, BufferError, TypeError) as err:
            raise WellDataError(
                f"{what}: cannot copy a {type(data).__name__} to host: {err}"
            ) from err
    if isinstance(data, list | tuple):
        return np.asarray(data)
    raise WellDataError(
        f"{what}: a {type(data).__name__} is not an array (NumPy, CuPy, PyTorch, JAX or "
        "anything with __array__ / __dlpack__ expected)"
    )
