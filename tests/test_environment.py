"""The installed environment keeps the promises of setup.cfg."""
import subprocess
import sys
from importlib import metadata


def test_one_opencv_build_is_installed():
    """The core install has exactly one OpenCV, opencv-python-headless. With mediapipe (the peers
    and train extras) its opencv-contrib-python comes too: both install the same cv2 package, so
    they must be the same version (constraints.txt), the one cv2 imports."""
    import cv2

    versions = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    opencv = {name: version for name, version in versions.items() if name.startswith("opencv")}
    expected = ["opencv-contrib-python", "opencv-python-headless"] if "mediapipe" in versions else ["opencv-python-headless"]
    assert sorted(opencv) == expected, opencv
    assert {version.rsplit(".", 1)[0] for version in opencv.values()} == {cv2.__version__}, (opencv, cv2.__version__)


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
