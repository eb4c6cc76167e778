"""Output file names for commands that write one file per input (translate, the REST client):
never two inputs to one name, and never over an input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def output_paths(files: list[Path], folder: Path, *, tag: str = "", suffix: str = ".png") -> tuple[list[Path], list[str]]:
    """One path in ``folder`` per input file, all different: ``<stem><tag><suffix>``; inputs that
    share a stem but not an extension (``plain.bmp``, ``plain.webp``) keep their extension
    (``plain_bmp.png``), and a name still taken (the same file name in two folders, or an input
    itself) gets ``-2``, ``-3``...
    Names are compared without case, as macOS and Windows file systems do. Returns the paths
    and a line for each input whose output is not simply named after it."""
    def key(path: Path) -> str:
        return str(path.resolve()).lower()

    stems, names = Counter(path.stem.lower() for path in files), Counter(path.name.lower() for path in files)
    inputs = {key(path) for path in files}
    taken = set(inputs)  # never overwrite an input
    paths, notes = [], []
    for path in files:
        # the extension where it tells this input from another of the same stem
        base = path.stem + (f"_{path.suffix[1:]}" if stems[path.stem.lower()] > names[path.name.lower()] else "")
        target, n = folder / f"{base}{tag}{suffix}", 2
        while key(target) in taken:
            target, n = folder / f"{base}-{n}{tag}{suffix}", n + 1
        taken.add(key(target))
        paths.append(target)
        plain = folder / f"{path.stem}{tag}{suffix}"
        if target != plain:
            why = "would overwrite an input" if key(plain) in inputs else "is another input's output too"
            notes.append(f"{path} -> {target} ({plain.name} {why})")
    return paths, notes
