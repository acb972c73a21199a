import subprocess
import sys


def test_core_imports_torch_only():
    # A fresh interpreter: other tests in this process may already have imported transformers.
    code = (
        "import sys, liftpeft.core\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'transformers', 'peft', 'sklearn'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"liftpeft.core pulled in: {out.stdout.strip()}"
