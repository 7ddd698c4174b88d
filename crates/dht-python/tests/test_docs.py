"""The example of docs/python.md runs as written."""

import os
import re
import subprocess
import sys

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs", "python.md")


def test_python_md_example_runs():
    text = open(DOC).read()
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    r = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "stored: True" in r.stdout
    assert "found: b'some binary data'" in r.stdout
