"""Build: every cext/*.pyx becomes the extension module otelmetrics._native.<name>.

From a git checkout Cython translates the .pyx files; an sdist carries the
generated .c files so installing it needs only a C compiler.
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CEXT = os.path.join("cext")

# Release flags for small devices: optimised, portable (never -march=native), no
# debug info (it would triple the installed size). They come after CFLAGS on the
# compiler's command line, so they win; cross builds add their -march through CFLAGS.
# No unwind tables either: C extensions throw no C++ exceptions, and they are a
# twentieth of the wheel (only native debuggers and profilers read them).
COMPILE_ARGS = ["-O2", "-g0", "-fno-strict-aliasing", "-fvisibility=hidden",
                "-ffunction-sections", "-fdata-sections",
                "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]
# Modules off the recording and export paths are optimised for size: -Os makes
# them about a fifth smaller. The recording path (instruments, aggregations,
# expo_histogram), the table and collection (table) and the OTLP encoder (otlp_wire)
# stay at -O2: under -Os a recording costs 5-12% more instructions and an OTLP
# encoding takes 2.4x as long.
SIZE_OPTIMISED = {"points", "exemplars", "attributes"}
# Strip symbols and drop unused sections: the wheel is what a device stores.
LINK_ARGS = ["-s", "-Wl,--gc-sections"]
if os.environ.get("OTELMETRICS_DEBUG"):
    COMPILE_ARGS = ["-O0", "-g"]
    LINK_ARGS = []


def _pxd_tree():
    """Cython finds a module's own .pxd and its cimports by qualified name
    (otelmetrics/_native/<name>.pxd), so mirror cext/*.pxd into that layout."""
    root = os.path.join(HERE, "build", "pxd")
    pkg = os.path.join(root, "otelmetrics", "_native")
    os.makedirs(pkg, exist_ok=True)
    for init in (os.path.join(root, "otelmetrics", "__init__.pxd"), os.path.join(pkg, "__init__.pxd")):
        open(init, "a").close()
    wanted = {os.path.basename(p): p for p in glob.glob(os.path.join(HERE, CEXT, "*.pxd"))}
    for stale in glob.glob(os.path.join(pkg, "*.pxd")):
        if os.path.basename(stale) not in wanted and not stale.endswith("__init__.pxd"):
            os.remove(stale)
    for name, pxd in wanted.items():
        with open(pxd) as src:
            text = src.read()
        dest = os.path.join(pkg, name)
        if not os.path.exists(dest) or open(dest).read() != text:  # keep mtimes for Cython's dependency check
            with open(dest, "w") as dst:
                dst.write(text)
    return root


def _extension(source):
    """otelmetrics._native.<name> from cext/<name>.pyx, or from the C that Cython generated for it."""
    name = os.path.splitext(os.path.basename(source))[0]
    args = COMPILE_ARGS
    if name in SIZE_OPTIMISED and not os.environ.get("OTELMETRICS_DEBUG"):
        args = ["-Os" if a == "-O2" else a for a in COMPILE_ARGS]
    return Extension("otelmetrics._native." + name, [os.path.join(CEXT, os.path.basename(source))],
                     extra_compile_args=args, extra_link_args=LINK_ARGS)


def _extensions():
    """Each module's Cython directives are in its own header line (``# cython: ...``)."""
    pyx = sorted(glob.glob(os.path.join(HERE, CEXT, "*.pyx")))
    have_cython = True
    try:
        from Cython.Build import cythonize
    except ImportError:
        have_cython = False
    if pyx and have_cython:
        return cythonize([_extension(p) for p in pyx], include_path=[_pxd_tree()],
                         annotate=bool(os.environ.get("OTELMETRICS_ANNOTATE")))
    # sdist without Cython: compile the generated C that ships with it, one file per
    # .pyx (a stale .c of a renamed module is not built).
    csrc = [os.path.splitext(p)[0] + ".c" for p in pyx]
    if not csrc or not all(os.path.exists(c) for c in csrc):
        raise SystemExit(
            "otelmetrics: neither Cython nor generated C sources found; "
            "install Cython (pip install Cython) to build from a git checkout"
        )
    return [_extension(c) for c in csrc]


setup(ext_modules=_extensions())
