"""The layering rule (scripts/check_layers.py) holds on the tree, and the
check really fails on the edges it forbids: planted in a copy of the tree."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_layers.py"


def run_check(root):
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=60)


def copy_tree(tmp_path):
    for top in ("src", "include"):
        shutil.copytree(ROOT / top, tmp_path / top)
    return tmp_path


def plant(root, rel, line):
    p = root / rel
    text = p.read_text()
    p.write_text(line + "\n" + text)


def test_tree_passes():
    r = run_check(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("rel,line,expect", [
    ("src/http/server.c", '#include "app/app.h"', 'src/http/server.c:1: #include "app/app.h": upward'),
    ("include/base/buf.h", '#include "market/stream_msg.h"', 'include/base/buf.h:1: #include "market/stream_msg.h": upward'),
    ("src/stream/hub.c", '#include "http/server_conn.h"', "private to http"),
    ("src/market/pipeline.c", '#include "log.h"', "another folder's header by its bare name"),
])
def test_planted_edge_fails(tmp_path, rel, line, expect):
    root = copy_tree(tmp_path)
    plant(root, rel, line)
    r = run_check(root)
    assert r.returncode == 1
    assert expect in r.stdout


def test_file_outside_a_layer_fails(tmp_path):
    root = copy_tree(tmp_path)
    (root / "src" / "misc").mkdir()
    (root / "src" / "misc" / "x.c").write_text("int x;\n")
    r = run_check(root)
    assert r.returncode == 1
    assert "src/misc/x.c: not in a layer folder" in r.stdout
