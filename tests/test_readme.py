"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    # The first example's pendulum at q = 0.5 at rest: q̈ = −g sin q.
    assert abs(float(namespace["qdd"][0]) + 9.8 * 0.479425538604203) < 1e-6
    assert namespace["report"]["failed_rollouts"] == 0
