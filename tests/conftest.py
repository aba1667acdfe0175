"""Shared fixtures of the codec tests: sample photos, seeded random images, test vectors.

Test modules must not import helpers from here by package path (in CI the package is
pip-installed and the tests run without the source tree on ``sys.path``): what is shared
is a fixture, a pytest hook, or a plain function imported as ``from conftest import ...``
(pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

_VECTORS_ENV = "NPP_EXT_TESTVECTORS"


def _testvectors_dir() -> Path:
    env = os.environ.get(_VECTORS_ENV)
    if env:
        return Path(env)
    # <root>/<repo>/tests/conftest.py -> <root>/shared/testvectors
    return Path(__file__).resolve().parents[2] / "shared" / "testvectors"


def _vector_records() -> tuple[Path, list[dict]] | tuple[Path, None]:
    """(directory, records of reference.json) or (directory, None) when absent."""
    d = _testvectors_dir()
    ref = d / "reference.json"
    if not ref.is_file():
        return d, None
    return d, json.loads(ref.read_text())


_SKIP_VECTORS = (
    "BPG test vectors not found at {} (set {} to the folder holding reference.json, "
    "the reference bpgenc .bpg files and bpgdec .dec.png outputs)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that need a GPU ``gpu``: a ``cuda`` device parameter, or a skip
    condition that names a GPU. The GPU check runs only those (CI runs the rest)."""
    for item in items:
        spec = getattr(item, "callspec", None)
        params = spec.params.values() if spec is not None else ()
        on_cuda = any(isinstance(v, str) and v.startswith("cuda") for v in params)
        reasons = " ".join(str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
        if on_cuda or "GPU" in reasons:
            item.add_marker(pytest.mark.gpu)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests that take ``vector`` over the shared test vectors (skip if absent)."""
    if "vector" not in metafunc.fixturenames:
        return
    d, records = _vector_records()
    if records is None:
        reason = _SKIP_VECTORS.format(d, _VECTORS_ENV)
        metafunc.parametrize("vector", [pytest.param(None, marks=pytest.mark.skip(reason=reason))])
        return
    params = []
    for rec in records:
        rec = dict(rec, path=d / rec["file"], dec_path=d / rec["file"].replace(".bpg", ".dec.png"))
        params.append(pytest.param(rec, id=rec["file"].removesuffix(".bpg")))
    metafunc.parametrize("vector", params)


@pytest.fixture(scope="session")
def testvectors_dir() -> Path:
    """Folder of the reference test vectors; skips the test when it is missing."""
    d, records = _vector_records()
    if records is None:
        pytest.skip(_SKIP_VECTORS.format(d, _VECTORS_ENV))
    return d


@pytest.fixture(scope="session")
def vector_records(testvectors_dir: Path) -> list[dict]:
    """reference.json with ``path`` and ``dec_path`` (Paths) added to each record."""
    records = json.loads((testvectors_dir / "reference.json").read_text())
    return [
        dict(
            r,
            path=testvectors_dir / r["file"],
            dec_path=testvectors_dir / r["file"].replace(".bpg", ".dec.png"),
        )
        for r in records
    ]


@pytest.fixture(scope="session")
def load_png():
    """Load a PNG as an (H, W, 3) uint8 array (independent of the BPG plugin)."""
    from PIL import Image

    def load(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            assert im.format == "PNG"
            return np.asarray(im.convert("RGB")).copy()

    return load


# ---- sample images -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """scikit-image's sample photos as (H, W, 3) uint8 arrays (read-only)."""
    skdata = pytest.importorskip("skimage.data")
    out = {
        "astronaut": skdata.astronaut(),
        "chelsea": skdata.chelsea(),
        "coffee": skdata.coffee(),
    }
    for a in out.values():
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        a.setflags(write=False)
    return out


@pytest.fixture(scope="session")
def photo_crop(photos):
    """``photo_crop(h, w, index=0)``: a C-contiguous crop of real photo content.

    Different ``index`` values give different crops (and photos); the same arguments always
    give the same pixels.
    """
    names = ["astronaut", "chelsea", "coffee"]

    def crop(h: int, w: int, index: int = 0) -> np.ndarray:
        src = photos[names[index % len(names)]]
        assert h <= src.shape[0] and w <= src.shape[1], (h, w, src.shape)
        y = (37 * index + 61) % (src.shape[0] - h + 1)
        x = (53 * index + 97) % (src.shape[1] - w + 1)
        return np.ascontiguousarray(src[y : y + h, x : x + w])

    return crop


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test (deterministic)."""
    return np.random.default_rng(20240607)


@pytest.fixture
def random_image(rng):
    """``random_image(h, w)``: uniform random (H, W, 3) uint8 noise from the test's seed."""

    def make(h: int, w: int) -> np.ndarray:
        return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)

    return make


@pytest.fixture
def torch():
    """The torch module; skips the test when torch is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Path of the ffmpeg executable; skips the test when it is not installed."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed (needed for the independent HEVC decode)")
    return exe


@pytest.fixture(scope="session")
def psnr():
    """``psnr(a, b)``: PSNR in dB between two uint8 arrays (inf when equal)."""

    def compute(a: np.ndarray, b: np.ndarray) -> float:
        assert a.shape == b.shape, (a.shape, b.shape)
        mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
        return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))

    return compute


# ---- an independent model of the colour maths (docs/color.md) ----------------------------


class ColourModel:
    """The reference tools' 8-bit colour maths in plain numpy, written from docs/color.md.

    Works in int64 throughout; ``>>`` on negative numbers floors, like the C shifts.
    The padded plane layout (Y, Cb, Cr, each padded by edge replication) follows the
    library's documented rule: sides rounded up to 8, or to 16 when a side is <= 8.
    """

    KR, KB = 0.299, 0.114
    KG = 1.0 - KR - KB
    FWD_SHIFT = 31 - 8
    INV_SHIFT = 30 - 8
    DOWN_TAPS = np.array([2, -4, -8, 17, 57, 57, 17, -8, -4, 2], np.int64)
    UP_EVEN = np.array([2, -6, 18, 57, -10, 4, -1], np.int64)
    UP_ODD = UP_EVEN[::-1].copy()

    def __init__(self) -> None:
        def fwd(k: float) -> int:  # round(k * 255' * 2^s / 255), 255' = 255 at 8 bits
            return int(np.rint(k * 255 * 2**self.FWD_SHIFT / 255))

        kr, kb, kg = self.KR, self.KB, self.KG
        self.y_row = [fwd(kr), fwd(kg), fwd(kb)]
        self.cb_row = [fwd(-0.5 * kr / (1 - kb)), fwd(-0.5 * kg / (1 - kb)), fwd(0.5)]
        self.cr_row = [fwd(0.5), fwd(-0.5 * kg / (1 - kr)), fwd(-0.5 * kb / (1 - kr))]

        def inv(k: float) -> int:
            return int(np.rint(k * 2**self.INV_SHIFT))

        self.one = inv(1.0)
        self.c_r = inv(2 * (1 - kr))
        self.c_gb = inv(2 * kb * (1 - kb) / (1 - kb - kr))
        self.c_gr = inv(2 * kr * (1 - kr) / (1 - kb - kr))
        self.c_b = inv(2 * (1 - kb))

    # layout

    @staticmethod
    def subsampling(chroma: str) -> tuple[int, int]:
        return {"420": (1, 1), "422": (1, 0), "444": (0, 0), "gray": (0, 0)}[chroma]

    def layout(self, w: int, h: int, chroma: str) -> dict[str, int]:
        unit = 16 if (w <= 8 or h <= 8) else 8
        cw_, ch_ = -(-w // unit) * unit, -(-h // unit) * unit
        sx, sy = self.subsampling(chroma)
        if chroma == "gray":
            rcw = rch = ccw = cch = 0
        else:
            rcw, rch = -(-w // (1 << sx)), -(-h // (1 << sy))
            ccw, cch = cw_ >> sx, ch_ >> sy
        return dict(
            coded_w=cw_,
            coded_h=ch_,
            chroma_w=rcw,
            chroma_h=rch,
            coded_cw=ccw,
            coded_ch=cch,
            y_size=cw_ * ch_,
            c_size=ccw * cch,
            total=cw_ * ch_ + 2 * ccw * cch,
        )

    def split_planes(self, yuv: np.ndarray, w: int, h: int, chroma: str) -> list[np.ndarray]:
        """The padded planes of a flat layout buffer, as 2-D views."""
        lay = self.layout(w, h, chroma)
        yuv = np.asarray(yuv).reshape(-1)
        assert yuv.size == lay["total"], (yuv.size, lay)
        planes = [yuv[: lay["y_size"]].reshape(lay["coded_h"], lay["coded_w"])]
        if chroma != "gray":
            for i in range(2):
                start = lay["y_size"] + i * lay["c_size"]
                planes.append(
                    yuv[start : start + lay["c_size"]].reshape(lay["coded_ch"], lay["coded_cw"])
                )
        return planes

    # forward

    def _matrix_row(self, rgb: np.ndarray, row: list[int], offset: int) -> np.ndarray:
        r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
        s = self.FWD_SHIFT
        v = ((row[0] * r + row[1] * g + row[2] * b + (1 << (s - 1))) >> s) + offset
        return np.clip(v, 0, 255)

    def _decimate_sums(self, plane: np.ndarray) -> np.ndarray:
        """Along axis 1: output i = sum_k tap[k] * src[clamp(2i - 4 + k)]."""
        n = plane.shape[1]
        i = np.arange((n + 1) // 2)
        idx = np.clip(2 * i[:, None] - 4 + np.arange(10)[None, :], 0, n - 1)
        return (plane[:, idx] * self.DOWN_TAPS).sum(axis=-1)

    def _decimate(self, plane: np.ndarray, chroma: str) -> np.ndarray:
        if chroma == "444":
            return plane
        if chroma == "422":
            return np.clip((self._decimate_sums(plane) + 64) >> 7, 0, 255)
        # 4:2:0: horizontal pass first keeps one extra bit (shift bit_depth - 7 = 1, rounded),
        # vertical pass rounds with shift 21 - bit_depth = 13 and clamps.
        h = (self._decimate_sums(plane) + 1) >> 1
        v = self._decimate_sums(h.T).T
        return np.clip((v + (1 << 12)) >> 13, 0, 255)

    @staticmethod
    def _pad(plane: np.ndarray, ph: int, pw: int) -> np.ndarray:
        return np.pad(plane, ((0, ph - plane.shape[0]), (0, pw - plane.shape[1])), mode="edge")

    def rgb_to_yuv(self, rgb: np.ndarray, chroma: str) -> np.ndarray:
        h, w, _ = rgb.shape
        lay = self.layout(w, h, chroma)
        y = self._matrix_row(rgb, self.y_row, 0)
        planes = [self._pad(y, lay["coded_h"], lay["coded_w"])]
        if chroma != "gray":
            for row in (self.cb_row, self.cr_row):
                c = self._decimate(self._matrix_row(rgb, row, 128), chroma)
                assert c.shape == (lay["chroma_h"], lay["chroma_w"])
                planes.append(self._pad(c, lay["coded_ch"], lay["coded_cw"]))
        return np.concatenate([p.reshape(-1) for p in planes]).astype(np.uint8)

    # inverse

    def _interp_sums(self, plane: np.ndarray, n_out: int) -> np.ndarray:
        """Along axis 1: output 2i + p from src[clamp(i - 3 .. i + 3)], even/odd taps."""
        n = plane.shape[1]
        j = np.arange(n_out)
        idx = np.clip((j >> 1)[:, None] - 3 + np.arange(7)[None, :], 0, n - 1)
        taps = np.where((j & 1)[:, None] == 0, self.UP_EVEN[None, :], self.UP_ODD[None, :])
        return (plane[:, idx] * taps).sum(axis=-1)

    def _interpolate(self, c: np.ndarray, w: int, h: int, chroma: str) -> np.ndarray:
        if chroma == "444":
            return c
        if chroma == "422":
            return np.clip((self._interp_sums(c, w) + 32) >> 6, 0, 255)
        v = self._interp_sums(c.T, h).T  # vertical first, full precision (shift 0 at 8 bits)
        return np.clip((self._interp_sums(v, w) + (1 << 11)) >> 12, 0, 255)

    def yuv_to_rgb(self, yuv: np.ndarray, w: int, h: int, chroma: str) -> np.ndarray:
        lay = self.layout(w, h, chroma)
        planes = [p.astype(np.int64) for p in self.split_planes(yuv, w, h, chroma)]
        y = planes[0][:h, :w]
        if chroma == "gray":
            cb = cr = np.zeros_like(y)
        else:
            cb, cr = (
                self._interpolate(p[: lay["chroma_h"], : lay["chroma_w"]], w, h, chroma) - 128
                for p in planes[1:]
            )
        s = self.INV_SHIFT
        yy = y * self.one + (1 << (s - 1))
        r = (yy + self.c_r * cr) >> s
        g = (yy - self.c_gb * cb - self.c_gr * cr) >> s
        b = (yy + self.c_b * cb) >> s
        return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def colour_model() -> ColourModel:
    """An independent numpy model of the reference colour maths (see ColourModel)."""
    return ColourModel()


def ue7(value: int) -> bytes:
    """docs/format.md#ue7: 7-bit groups, most significant first, high bit = more."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def child_env() -> dict[str, str]:
    """Environment for a child interpreter that imports the npp_ext these tests import.

    The tested package's directory goes first on PYTHONPATH, absolute: a child started in
    another directory must neither miss a source-tree build nor pick up the repository's
    npp_ext (no compiled modules in a clean checkout) over the installed one.
    """
    import npp_ext

    root = str(Path(npp_ext.__file__).resolve().parents[1])
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    # `python -m` puts the working directory ahead of PYTHONPATH: from the repository root
    # that is the source tree. PYTHONSAFEPATH (Python 3.11+) keeps it off sys.path.
    return dict(os.environ, PYTHONPATH=path, PYTHONSAFEPATH="1")
