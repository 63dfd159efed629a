"""Writing matplotlib figures: the one place figures reach the disk (plots, confusion matrices,
CV summaries, inference timelines), atomically."""
import os

from utils.utilities import atomic_path


def save_figure(figure, path):
    """Save a matplotlib figure atomically; the format comes from the file extension."""
    file_format = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, format=file_format, dpi=150)
