"""The quickstart notebook's code runs as written (its cells executed in order)."""

import json
from pathlib import Path

import matplotlib

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda: None)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)
    # The object's first block is straight ahead: on 5.1 the centre (M+000) carries it.
    x = namespace["renders"]["5.1"]
    first_block = x[: 48000 // 20]
    assert abs(first_block[:, 2]).max() > 0.2
    assert abs(first_block[:, 3]).max() == 0.0  # LFE gets nothing
    plt.close("all")
