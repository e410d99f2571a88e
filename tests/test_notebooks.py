"""Every notebook in notebooks/ (except the quickstart, run by test_notebook.py) executes from
start to end in a fresh python3 kernel, offline, in an empty working folder, and shows its
pictures."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(p for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")
                   if p.name != "quickstart.ipynb")


def test_there_are_notebooks_to_run():
    assert {"compare_layouts.ipynb", "trajectories.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(not c.get("outputs") for c in code_cells), "saved with outputs"
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in code_cells for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in code_cells for o in c.outputs
              if o.get("output_type") in ("display_data", "execute_result")
              and {"image/png", "image/gif"} & set(o.get("data", {}))]
    assert images, f"{path.name} shows no picture"
