"""Writing a run directory's files so that a reader, or a kill, never sees half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import IO, Union

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # PEFT's weights file: an adapter folder is complete with it

Content = Union[str, bytes, Callable[[IO], None]]


def write_atomically(path: Union[str, Path], content: Content) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to a binary stream) to a temporary
    file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            if isinstance(content, str):
                stream.write(content.encode())
            elif isinstance(content, bytes):
                stream.write(content)
            else:
                content(stream)
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise
    return path


def replace_folder(finished: Path, final: Path) -> None:
    """Swap a finished folder into place of ``final`` (which may exist): readers see the old or the new one."""
    retired = final.with_name(f".retired-{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, retired)
    os.replace(finished, final)
    shutil.rmtree(retired, ignore_errors=True)


def adapter_files_present(folder: Union[str, Path]) -> bool:
    return (Path(folder) / ADAPTER_WEIGHTS).is_file()


def new_figure(**options):
    """A matplotlib ``Figure`` (``options`` as it takes them), without pyplot's global state, that measures
    text with one renderer instead of a new one per text (see :func:`_figure_class`)."""
    return _figure_class()(**options)


@lru_cache(maxsize=1)
def _figure_class() -> type:
    """A bare ``Figure`` whose canvas cannot draw (:func:`save_figure` prints it through Agg, as before) and
    that keeps the renderer it measures text with. A bare figure built a new renderer for every text
    measured before it is drawn, and seaborn measures every tick label of a heatmap: 343 renderers, 5 s
    of the demo's ``crosstask analyze``. A canvas that can draw is no fix: seaborn then draws the whole
    figure after each heatmap, which changed the figures and took three times as long."""
    from matplotlib.figure import Figure

    class MeasuringFigure(Figure):
        def _get_renderer(self):
            if hasattr(self.canvas, "get_renderer"):  # while savefig prints through Agg
                return super()._get_renderer()
            key = (*self.bbox.size, self.dpi)
            if getattr(self, "_measuring_key", None) != key:
                self._measuring_renderer, self._measuring_key = super()._get_renderer(), key
            return self._measuring_renderer

    return MeasuringFigure


def save_figure(figure, path: Union[str, Path], dpi: int) -> Path:
    """A matplotlib figure saved as a PNG through :func:`write_atomically`."""
    return write_atomically(path, lambda stream: figure.savefig(stream, format="png", dpi=dpi))


def save_table(frame, path: Union[str, Path], **to_csv) -> Path:
    """A DataFrame written as CSV through :func:`write_atomically` (``to_csv`` options as pandas takes them)."""
    return write_atomically(path, frame.to_csv(**to_csv))
