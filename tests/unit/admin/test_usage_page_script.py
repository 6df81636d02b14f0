"""The usage page's script parses as JavaScript (the browser test shows what it does)."""

import subprocess

from devtools.runtime import NODE_BIN
from relay.admin.usage_page_script import SCRIPT


def test_the_script_is_valid_javascript(tmp_path):
    script = tmp_path / "ui.js"
    script.write_text(SCRIPT)
    checked = subprocess.run([str(NODE_BIN / "node"), "--check", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
