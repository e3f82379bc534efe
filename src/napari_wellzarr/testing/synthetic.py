"""Deterministic synthetic fluorescence images that look like a nuclei screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

    _FloatImage = np.ndarray[tuple[int, int], np.dtype[np.float32]]
    _FloatArray = npt.NDArray[np.floating[Any]]
    #: Maps per-kernel pixel offsets (dy, dx), each (n, k, k), to kernel weights.
    _Profile = Callable[[_FloatArray, _FloatArray], _FloatArray]

__all__ = [
    "BACKGROUND_OFFSET",
    "NUCLEI_PER_MEGAPIXEL",
    "derive_seed",
    "nuclei_plane",
    "synthetic_well",
]

#: Camera offset (counts) added to every pixel before noise, at 12-bit depth.
BACKGROUND_OFFSET = 100
#: Mean number of cells per 2**20 pixels (about 80 in a 512 x 512 plane).
NUCLEI_PER_MEGAPIXEL = 320.0

_LAYOUT_STREAM = 0
_CHANNEL_STREAM = 1
_NOISE_STREAM = 2
_N_CHANNEL_KINDS = 3


def derive_seed(seed: int, *keys: int) -> int:
    """Derive a stable 63-bit child seed from a seed and integer keys.

    Parameters
    ----------
    seed : int
        Non-negative parent seed.
    *keys : int
        Non-negative integers naming the child, e.g. ``(row_index, column_index)`` of a well.

    Returns
    -------
    int
        A non-negative seed; the same inputs always give the same value.

    Raises
    ------
    ValueError
        If ``seed`` or a key is negative.
    """
    entropy = [seed, *keys]
    if any(value < 0 for value in entropy):
        raise ValueError(f"seeds and keys must be non-negative, got {entropy}")
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> _FloatImage:
    """Return zero-mean, unit-scale smooth noise with feature size about ``cell`` pixels."""
    height, width = shape
    gh = height // cell + 2
    gw = width // cell + 2
    coarse = rng.standard_normal((gh, gw), dtype=np.float32)
    return _upsample(coarse, cell, shape)


def _upsample(coarse: _FloatImage, factor: int, shape: tuple[int, int]) -> _FloatImage:
    """Bilinearly upsample ``coarse`` by an integer ``factor`` and crop to ``shape``.

    Pixel ``(i, j)`` of the result samples ``coarse`` at ``(i / factor, j / factor)``;
    ``coarse`` needs at least ``shape[k] // factor + 2`` entries along axis ``k``.
    """
    height, width = shape
    ys = np.arange(height, dtype=np.float32) / factor
    xs = np.arange(width, dtype=np.float32) / factor
    y0 = ys.astype(np.intp)
    x0 = xs.astype(np.intp)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    rows = coarse[y0, :] * (1.0 - fy) + coarse[y0 + 1, :] * fy
    out = rows[:, x0] * (1.0 - fx) + rows[:, x0 + 1] * fx
    return out.astype(np.float32, copy=False)


def _splat_coarse(
    canvas_shape: tuple[int, int],
    cy: _FloatArray,
    cx: _FloatArray,
    semi_a: _FloatArray,
    semi_b: _FloatArray,
    angle: _FloatArray,
    edge: float,
    weight: _FloatArray,
) -> _FloatImage:
    """Render soft, wide ellipses at half resolution and upsample (they have no fine detail)."""
    height, width = canvas_shape
    small = (height // 2 + 2, width // 2 + 2)
    radius = int(np.ceil((float(semi_a.max(initial=0.0)) + 4.0 * edge) / 2.0)) + 1
    coarse = _splat(
        small,
        cy / 2.0,
        cx / 2.0,
        radius,
        _per_cell_weighted(semi_a / 2.0, semi_b / 2.0, angle, edge / 2.0, weight),
    )
    return _upsample(coarse, 2, canvas_shape)


def _splat(
    canvas_shape: tuple[int, int],
    cy: _FloatArray,
    cx: _FloatArray,
    radius: int,
    profile: _Profile,
) -> _FloatImage:
    """Add many equally sized, vectorised kernels into one image.

    Parameters
    ----------
    canvas_shape : tuple of int
        Shape (y, x) of the output image.
    cy, cx : ndarray
        Kernel centres in output pixel coordinates, shape (n,).
    radius : int
        Half size of the square kernel window.
    profile : callable
        ``profile(dy, dx) -> weights`` where ``dy`` and ``dx`` have shape (n, k, k) and hold the
        offsets of each window pixel from the (sub-pixel) kernel centre.

    Returns
    -------
    ndarray
        float32 image of shape ``canvas_shape``.
    """
    height, width = canvas_shape
    if cy.size == 0:
        return np.zeros(canvas_shape, dtype=np.float32)
    iy = np.floor(cy).astype(np.intp)
    ix = np.floor(cx).astype(np.intp)
    # Pad the canvas so that every window fits; kernels are cropped with the padding.
    overhang = max(0, -int(iy.min()), -int(ix.min()), int(iy.max()) - height, int(ix.max()) - width)
    pad = radius + 1 + overhang
    ph, pw = height + 2 * pad, width + 2 * pad
    window = np.arange(-radius, radius + 1, dtype=np.intp)
    wy = iy[:, None, None] + window[None, :, None]
    wx = ix[:, None, None] + window[None, None, :]
    dy = (wy - cy[:, None, None]).astype(np.float32)
    dx = (wx - cx[:, None, None]).astype(np.float32)
    weights = np.asarray(profile(dy, dx), dtype=np.float64)
    flat = (wy + pad) * pw + (wx + pad)
    acc = np.bincount(flat.ravel(), weights=weights.ravel(), minlength=ph * pw)
    image = acc.reshape(ph, pw)[pad : pad + height, pad : pad + width]
    return image.astype(np.float32)


def _ellipse_profile(
    semi_a: _FloatArray,
    semi_b: _FloatArray,
    angle: _FloatArray,
    edge: float,
    dome: float,
) -> _Profile:
    """Build a smooth-edged elliptical blob profile for :func:`_splat`.

    The returned callable maps offsets to values in [0, 1]: ~1 inside the ellipse (slightly
    brighter in the middle when ``dome`` > 0) falling off over ``edge`` pixels at the rim.
    """
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    inv_a = (1.0 / semi_a).astype(np.float32)[:, None, None]
    inv_b = (1.0 / semi_b).astype(np.float32)[:, None, None]
    mean_axis = (0.5 * (semi_a + semi_b)).astype(np.float32)[:, None, None]

    def profile(dy: _FloatArray, dx: _FloatArray) -> _FloatArray:
        u = (dx * cos + dy * sin) * inv_a
        v = (-dx * sin + dy * cos) * inv_b
        r = np.sqrt(u * u + v * v)
        # Distance (pixels) outside the rim, negative inside; logistic edge of width ``edge``.
        outside = (r - 1.0) * mean_axis
        body = 1.0 / (1.0 + np.exp(np.clip(outside / edge, -30.0, 30.0)))
        shaped: _FloatArray = body * (1.0 + dome * np.clip(1.0 - r * r, 0.0, 1.0))
        return shaped

    return profile


def _gaussian_profile(sigma: _FloatArray) -> _Profile:
    """Build an isotropic Gaussian spot profile (peak 1) for :func:`_splat`."""
    inv = (1.0 / (2.0 * sigma * sigma)).astype(np.float32)[:, None, None]

    def profile(dy: _FloatArray, dx: _FloatArray) -> _FloatArray:
        out: _FloatArray = np.exp(-(dy * dy + dx * dx) * inv)
        return out

    return profile


def nuclei_plane(
    shape: tuple[int, int] = (512, 512),
    *,
    seed: int,
    n_nuclei: int | None = None,
    channel: int = 0,
    dtype: npt.DTypeLike = np.uint16,
    bit_depth: int = 12,
    defocus: float = 0.0,
    z: int = 0,
) -> npt.NDArray[Any]:
    """Render one synthetic fluorescence plane of a cell-culture well.

    Parameters
    ----------
    shape : tuple of int, default (512, 512)
        Plane shape (y, x); both at least 8.
    seed : int
        Non-negative seed.  Planes with the same seed show the same cells in every channel.
    n_nuclei : int, optional
        Number of cells.  By default about :data:`NUCLEI_PER_MEGAPIXEL` per 2**20 pixels
        (+-20 %, drawn from the seed), at least one.
    channel : int, default 0
        Stain to mimic, cycling with period 3: ``0`` nuclear stain (bright, sharp, textured
        ellipses), ``1`` cytoplasm-like (wider, dimmer, soft blobs that dip over the nucleus),
        ``2`` punctate spots (small bright Gaussian spots over a faint cell haze).  Channels >= 3
        reuse these looks with their own random structure.
    dtype : dtype-like, default numpy.uint16
        Integer output dtype; must hold ``2**bit_depth - 1``.
    bit_depth : int, default 12
        Camera bit depth: values are clipped to ``0 .. 2**bit_depth - 1``.  Intensities are
        scaled by ``2**(bit_depth - 12)`` so the image looks alike at any depth.
    defocus : float, default 0.0
        Defocus in pixels of extra edge blur (>= 0); blurs edges, dims peaks, fades texture.
        Use it to make z-stacks that vary smoothly.
    z : int, default 0
        z index; only selects the shot-noise stream, so slices of a stack get independent noise.

    Returns
    -------
    numpy.ndarray
        Array of ``shape`` and ``dtype`` with a dark background (~100-200 counts at 12 bit),
        cells, shot (Poisson) noise and mild vignetting.

    Raises
    ------
    ValueError
        On a negative seed, channel, z, n_nuclei or defocus, a too small shape, or a
        ``bit_depth`` that does not fit ``dtype``.
    """
    height, width = (int(shape[0]), int(shape[1]))
    out_dtype = np.dtype(dtype)
    if height < 8 or width < 8:
        raise ValueError(f"shape must be at least (8, 8), got {shape}")
    if seed < 0 or channel < 0 or z < 0:
        raise ValueError("seed, channel and z must be non-negative")
    if defocus < 0:
        raise ValueError(f"defocus must be >= 0, got {defocus}")
    if out_dtype.kind not in "ui":
        raise ValueError(f"dtype must be an integer dtype, got {out_dtype}")
    if not 1 <= bit_depth <= np.iinfo(out_dtype).bits or 2**bit_depth - 1 > np.iinfo(out_dtype).max:
        raise ValueError(f"bit_depth {bit_depth} does not fit dtype {out_dtype}")
    if n_nuclei is not None and n_nuclei < 0:
        raise ValueError(f"n_nuclei must be >= 0, got {n_nuclei}")

    layout = np.random.default_rng([seed, _LAYOUT_STREAM])
    chan_rng = np.random.default_rng([seed, _CHANNEL_STREAM, channel])
    noise_rng = np.random.default_rng([seed, _NOISE_STREAM, channel, z])
    kind = channel % _N_CHANNEL_KINDS

    # --- cell layout, shared by every channel and z of this seed -------------------------------
    expected = NUCLEI_PER_MEGAPIXEL * height * width / 2**20
    drawn = round(expected * float(layout.uniform(0.8, 1.2)))
    n = max(1, drawn) if n_nuclei is None else n_nuclei
    cy = layout.uniform(-4.0, height + 4.0, n)
    cx = layout.uniform(-4.0, width + 4.0, n)
    semi_a = layout.uniform(8.0, 15.0, n)
    semi_b = semi_a * layout.uniform(0.6, 0.95, n)
    angle = layout.uniform(0.0, np.pi, n)
    brightness = layout.lognormal(0.0, 0.3, n)  # per-cell expression level
    # Mitotic / apoptotic cells: a few small very bright nuclei.
    small = layout.random(n) < 0.05
    semi_a = np.where(small, semi_a * 0.55, semi_a)
    semi_b = np.where(small, semi_b * 0.55, semi_b)
    brightness = np.where(small, brightness * 1.8, brightness)

    blur = float(defocus)
    focus_gain = 1.0 / (1.0 + 0.08 * blur) ** 2  # peaks dim as light spreads out of focus
    texture_gain = 1.0 / (1.0 + 0.5 * blur)

    if kind == 0:
        edge = 1.2 + blur
        radius = int(np.ceil(semi_a.max(initial=0.0) + 5.0 * edge)) + 1
        per_cell = _splat(
            (height, width),
            cy,
            cx,
            radius,
            _per_cell_weighted(semi_a, semi_b, angle, edge, brightness),
        )
        texture = 0.6 * _smooth_noise(chan_rng, (height, width), 3) + 0.4 * _smooth_noise(
            chan_rng, (height, width), 9
        )
        peak = chan_rng.uniform(1400.0, 2200.0)
        signal = peak * focus_gain * per_cell * (1.0 + 0.22 * texture_gain * texture)
    elif kind == 1:
        edge = 4.0 + blur
        cell_a = semi_a * chan_rng.uniform(1.7, 2.2, n)
        cell_b = semi_b * chan_rng.uniform(1.7, 2.2, n)
        cell_angle = angle + chan_rng.normal(0.0, 0.4, n)
        cells = _splat_coarse((height, width), cy, cx, cell_a, cell_b, cell_angle, edge, brightness)
        nuc_edge = 1.5 + blur
        nuc_radius = int(np.ceil(semi_a.max(initial=0.0) + 5.0 * nuc_edge)) + 1
        holes = _splat(
            (height, width),
            cy,
            cx,
            nuc_radius,
            _per_cell_weighted(semi_a, semi_b, angle, nuc_edge, brightness),
        )
        texture = _smooth_noise(chan_rng, (height, width), 6)
        peak = chan_rng.uniform(450.0, 750.0)
        body = np.maximum(cells - 0.45 * holes, 0.0)
        signal = peak * focus_gain * body * (1.0 + 0.35 * texture_gain * texture)
    else:
        edge = 5.0 + blur
        haze = _splat_coarse(
            (height, width), cy, cx, semi_a * 1.8, semi_b * 1.8, angle, edge, brightness
        )
        spots_per_cell = chan_rng.poisson(7.0, n)
        owner = np.repeat(np.arange(n), spots_per_cell)
        n_spots = int(owner.size)
        dist = np.sqrt(chan_rng.random(n_spots)) * 1.6
        theta = chan_rng.uniform(0.0, 2.0 * np.pi, n_spots)
        sy = cy[owner] + dist * semi_a[owner] * np.sin(theta)
        sx = cx[owner] + dist * semi_a[owner] * np.cos(theta)
        sigma = np.hypot(chan_rng.uniform(0.9, 1.6, n_spots), 0.35 * blur)
        spot_peak = chan_rng.lognormal(0.0, 0.35, n_spots) * (1.2 / sigma) ** 2
        spot_radius = int(np.ceil(3.0 * sigma.max(initial=0.0))) + 1
        spots = _splat(
            (height, width),
            sy,
            sx,
            spot_radius,
            _scaled(_gaussian_profile(sigma), spot_peak),
        )
        peak = chan_rng.uniform(1200.0, 2000.0)
        signal = 160.0 * haze + peak * spots

    # --- illumination, background, shot noise ---------------------------------------------------
    scale = 2.0 ** (bit_depth - 12)
    yy = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / max(height, width)
    xx = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / max(height, width)
    vignette = (1.0 - 0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2)) * np.float32(scale)
    background = np.float32(chan_rng.uniform(35.0, 70.0))
    photons = signal.astype(np.float32, copy=False)
    photons += background
    photons *= vignette
    np.maximum(photons, 0.0, out=photons)
    counts = noise_rng.poisson(photons)
    offset = round(BACKGROUND_OFFSET * scale)
    np.clip(counts, 0, 2**bit_depth - 1 - offset, out=counts)
    counts += offset
    return counts.astype(out_dtype)


def _per_cell_weighted(
    semi_a: _FloatArray,
    semi_b: _FloatArray,
    angle: _FloatArray,
    edge: float,
    weight: _FloatArray,
) -> _Profile:
    """Elliptical profile multiplied by a per-cell weight (expression level)."""
    return _scaled(_ellipse_profile(semi_a, semi_b, angle, edge, dome=0.25), weight)


def _scaled(profile: _Profile, weight: _FloatArray) -> _Profile:
    """Wrap a :func:`_splat` profile so each kernel is multiplied by its own weight."""
    w = weight.astype(np.float32)[:, None, None]

    def scaled(dy: _FloatArray, dx: _FloatArray) -> _FloatArray:
        out: _FloatArray = profile(dy, dx) * w
        return out

    return scaled


def synthetic_well(
    n_fields: int,
    n_channels: int,
    n_z: int,
    shape: tuple[int, int] = (512, 512),
    *,
    seed: int,
    dtype: npt.DTypeLike = np.uint16,
    bit_depth: int = 12,
    z_step: float = 2.0,
) -> npt.NDArray[Any]:
    """Render a whole well as a (field, c, z, y, x) stack.

    Parameters
    ----------
    n_fields, n_channels, n_z : int
        Numbers of fields (sites), channels and z-slices; each at least 1.
    shape : tuple of int, default (512, 512)
        Plane shape (y, x).
    seed : int
        Non-negative well seed; derive one per well, e.g. ``derive_seed(plate_seed, row, col)``.
        Field ``f`` uses ``derive_seed(seed, f)``, so fields differ but are reproducible.
    dtype : dtype-like, default numpy.uint16
        Integer output dtype.
    bit_depth : int, default 12
        Camera bit depth.
    z_step : float, default 2.0
        Extra edge blur (pixels) per slice away from the middle slice, which is in focus.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(n_fields, n_channels, n_z, *shape)``.  Within a field all channels
        show the same cells; along z the cells blur and dim smoothly away from focus.

    Raises
    ------
    ValueError
        If a count is below 1 or ``z_step`` is negative.
    """
    if min(n_fields, n_channels, n_z) < 1:
        raise ValueError("n_fields, n_channels and n_z must be >= 1")
    if z_step < 0:
        raise ValueError(f"z_step must be >= 0, got {z_step}")
    height, width = (int(shape[0]), int(shape[1]))
    out = np.empty((n_fields, n_channels, n_z, height, width), dtype=np.dtype(dtype))
    focus = (n_z - 1) / 2.0
    for field in range(n_fields):
        field_seed = derive_seed(seed, field)
        for c in range(n_channels):
            for zi in range(n_z):
                out[field, c, zi] = nuclei_plane(
                    (height, width),
                    seed=field_seed,
                    channel=c,
                    dtype=dtype,
                    bit_depth=bit_depth,
                    defocus=abs(zi - focus) * z_step,
                    z=zi,
                )
    return out
