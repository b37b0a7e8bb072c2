"""The layering rule (scripts/check_layers.py) holds on the tree, and the
check really fails on the edges it forbids: planted in a copy of the tree."""
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_upward_include_fails(tmp_path):
    root = copy_tree(tmp_path)
    plant(root, "src/http/server.c", '#include "app/app.h"')
    r = run_check(root)
    assert r.returncode == 1
    assert 'src/http/server.c:1: #include "app/app.h": upward' in r.stdout


def test_upward_include_from_a_public_header_fails(tmp_path):
    root = copy_tree(tmp_path)
    plant(root, "include/base/buf.h", '#include "market/stream_msg.h"')
    r = run_check(root)
    assert r.returncode == 1
    assert "include/base/buf.h:1" in r.stdout and "upward" in r.stdout


def test_private_header_of_another_layer_fails(tmp_path):
    root = copy_tree(tmp_path)
    plant(root, "src/stream/hub.c", '#include "http/server_conn.h"')
    r = run_check(root)
    assert r.returncode == 1
    assert "private to http" in r.stdout


def test_bare_name_of_another_folder_fails(tmp_path):
    root = copy_tree(tmp_path)
    plant(root, "src/market/pipeline.c", '#include "log.h"')
    r = run_check(root)
    assert r.returncode == 1
    assert "another folder's header by its bare name" in r.stdout


def test_file_outside_a_layer_fails(tmp_path):
    root = copy_tree(tmp_path)
    (root / "src" / "misc").mkdir()
    (root / "src" / "misc" / "x.c").write_text("int x;\n")
    r = run_check(root)
    assert r.returncode == 1
    assert "src/misc/x.c: not in a layer folder" in r.stdout
