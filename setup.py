"""Build: cext/_native.pyx (which includes the other cext sources) becomes the one
extension module otelmetrics._native.

From a git checkout Cython translates it; an sdist carries the generated
cext/_native.c so installing it needs only a C compiler.
"""
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CEXT = os.path.join("cext")
MODULE = "_native"

# Release flags for small devices: optimised, portable (never -march=native), no
# debug info (it would triple the installed size). They come after CFLAGS on the
# compiler's command line, so they win; cross builds add their -march through CFLAGS.
# No unwind tables either: C extensions throw no C++ exceptions, and they are a
# twentieth of the wheel (only native debuggers and profilers read them).
# One translation unit, one level: -O2 (cext/README.md, "Build flags", has the
# measurements against -Os). At -O2 GCC stops inlining the attribute hashing and the
# cell probe into the recording path of a unit this size: -O3's inlining limit for
# functions declared inline brings them back. No alignment padding and no
# vectorisation: 7% off the module and no instruction more per recording. No partial
# inlining (GCC's split of a function into an inlined head and a `.part` rest): 4 KB off the
# module, the same instructions per recording, +0.3% for a collection with its encoding. No C line
# numbers in tracebacks (Cython shows none unless asked at run time): one store less
# per error branch. -DNDEBUG and -fwrapv as CPython's own release flags, stated here rather
# than taken from the interpreter's CFLAGS: a cross build's CFLAGS replace those with newer
# setuptools, and without NDEBUG the assertions in CPython's inline functions were compiled
# into every aarch64 wheel (+18 KB of code).
COMPILE_ARGS = ["-DNDEBUG", "-fwrapv", "-O2", "--param=max-inline-insns-single=200",
                "-falign-functions=1", "-falign-jumps=1", "-falign-loops=1", "-falign-labels=1",
                "-fno-tree-vectorize", "-DCYTHON_CLINE_IN_TRACEBACK=0",
                "-g0", "-fno-strict-aliasing", "-fvisibility=hidden", "-fno-partial-inlining",
                "-ffunction-sections", "-fdata-sections",
                "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]
# Strip symbols, drop unused sections, and no page alignment between code and data
# (the padding is file size): the wheel is what a device stores.
LINK_ARGS = ["-s", "-Wl,--gc-sections", "-Wl,-z,noseparate-code"]
if os.environ.get("OTELMETRICS_DEBUG"):
    COMPILE_ARGS = ["-O0", "-g"]
    LINK_ARGS = []


def _pxd_tree():
    """Cython finds the module's .pxd by its qualified name (otelmetrics/_native.pxd):
    mirror cext/_native.pxd into that layout. The files it and the .pyx include are
    found in cext/ (the include path)."""
    root = os.path.join(HERE, "build", "pxd")
    pkg = os.path.join(root, "otelmetrics")
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(pkg, "__init__.pxd"), "a").close()
    with open(os.path.join(HERE, CEXT, MODULE + ".pxd")) as src:
        text = src.read()
    dest = os.path.join(pkg, MODULE + ".pxd")
    if not os.path.exists(dest) or open(dest).read() != text:  # keep mtimes for Cython's dependency check
        with open(dest, "w") as dst:
            dst.write(text)
    return root


def _extension(source):
    """otelmetrics._native from cext/_native.pyx, or from the C that Cython generated for it."""
    return Extension("otelmetrics." + MODULE, [source], extra_compile_args=COMPILE_ARGS,
                     extra_link_args=LINK_ARGS)


def _extensions():
    """The Cython directives are in the header line of cext/_native.pyx (``# cython: ...``)."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    if cythonize is not None:
        return cythonize([_extension(os.path.join(CEXT, MODULE + ".pyx"))],
                         include_path=[_pxd_tree(), os.path.join(HERE, CEXT)],
                         annotate=bool(os.environ.get("OTELMETRICS_ANNOTATE")))
    # sdist without Cython: compile the generated C that ships with it.
    csrc = os.path.join(CEXT, MODULE + ".c")
    if not os.path.exists(os.path.join(HERE, csrc)):
        raise SystemExit(
            "otelmetrics: neither Cython nor generated C sources found; "
            "install Cython (pip install Cython) to build from a git checkout"
        )
    return [_extension(csrc)]


setup(ext_modules=_extensions())
