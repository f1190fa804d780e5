"""Packaging for nsqtx, including the twistd plugin that makes `twistd nsqtx` work."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    # Executed rather than imported so that building needs nothing but setuptools.
    namespace = {}
    with open(os.path.join(HERE, "nsqtx", "version.py")) as f:
        exec(f.read(), namespace)
    return namespace["__version__"]


def read_readme():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


# cryptography>=44, pyOpenSSL>=25 and cramjam>=2.8.4 have no PyPy 3.9 wheels and need a Rust
# toolchain to build.
PYPY = 'platform_python_implementation == "PyPy"'
NOT_PYPY = 'platform_python_implementation != "PyPy"'

setup(
    name="nsqtx",
    version=read_version(),
    description="NSQ's nsqd (protocol V2, wire-compatible with NSQ 1.3) on Twisted",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # twisted.plugins is a namespace-style plugin directory: it must ship without an __init__.py
    # so that Twisted's own twisted/plugins/__init__.py keeps owning the package.
    packages=find_packages(include=["nsqtx", "nsqtx.*"]) + ["twisted.plugins"],
    install_requires=[
        # nsqtx.tcp_speedups reads Twisted's internal TCP state: only the releases it was checked
        # against (25.5, the last for Python 3.9, 26.4 and 26.10) are admitted
        "Twisted[tls]>=25.5.0,<26.11",
        "klein>=21.8.0",
        'tomli>=1.1.0; python_version < "3.11"',
        # snappy's framed streams; one requirement per runtime, since the pip that Debian's PyPy
        # bundles prepares the newest release of a first, unbounded requirement before merging a
        # second one, and a cramjam without a PyPy wheel cannot be prepared without Rust
        "cramjam>=2.8.3; " + NOT_PYPY,
        "cramjam>=2.8.3,<2.8.4; " + PYPY,
        "cryptography<44; " + PYPY,
        "pyOpenSSL<25; " + PYPY,
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-twisted",
            "pytest-timeout",
            "treq",
            "pynsq",
            # pynsq's snappy
            "python-snappy",
            # gevent has no PyPy 3.9 wheels
            'gnsq; platform_python_implementation == "CPython"',
            "hypothesis",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: Implementation :: CPython",
        "Programming Language :: Python :: Implementation :: PyPy",
    ],
)
