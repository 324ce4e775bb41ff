"""The installed environment keeps the promises of setup.cfg."""
import subprocess
import sys
from importlib import metadata


def test_exactly_one_opencv_distribution_is_installed():
    names = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    opencv = sorted(n for n in names if n.startswith("opencv"))
    assert opencv == ["opencv-contrib-python"], opencv


def test_the_app_never_imports_torch(talking_clip):
    code = (
        "import sys\n"
        "from app.cli import main\n"
        f"assert main(['track', {str(talking_clip)!r}, '--max-frames', '3']) == 0\n"
        f"assert main(['track', {str(talking_clip)!r}, '--max-frames', '3', '--detector', 'mtcnn']) == 0\n"
        "import app.gui.window, app.gui.worker\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
