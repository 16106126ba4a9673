"""Write (or check) the Pipfile that Streamlit Community Cloud installs, from requirements.txt.

    python scripts/cloud_deps.py           # check: exit 1 when the Pipfile does not match requirements.txt
    python scripts/cloud_deps.py --write   # rewrite the Pipfile after editing requirements.txt

Why a Pipfile: on Linux, `torch` from PyPI is the multi-GB CUDA build, too big for Community Cloud's
containers, and a requirements.txt that asks for the CPU build (`--extra-index-url
https://download.pytorch.org/whl/cpu`, `torch==2.13.0+cpu`) would change what `pip install -r
requirements.txt` does on every other machine (and fail on macOS, which has no +cpu wheels).
Community Cloud takes the first dependency file it finds, in the entrypoint's folder and then at the
root, in this order: uv.lock, Pipfile, environment.yml, requirements.txt, pyproject.toml
(https://docs.streamlit.io/deploy/streamlit-community-cloud/deploy-your-app/app-dependencies).
So a Pipfile beside streamlit_app.py is what Community Cloud installs, while pip and everyone else
keep reading requirements.txt. The Pipfile holds the same requirements with the same bounds, except
torch, which comes as `==<version>+cpu` from PyTorch's CPU index (only torch: every other package
comes from PyPI).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
PIPFILE = ROOT / "Pipfile"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")

HEADER = f"""\
# Streamlit Community Cloud's dependency file (it prefers a Pipfile to requirements.txt).
# Made by `python scripts/cloud_deps.py --write` from requirements.txt: edit that file, then rerun it.
# The same requirements, except torch: the CPU build from PyTorch's index, because the Linux torch on
# PyPI is the multi-GB CUDA build. Linux only (PyTorch's index has no +cpu wheels for macOS).
# The Python version is chosen in Community Cloud's "Advanced settings" (3.11, as CI tests).

[[source]]
name = "pypi"
url = "https://pypi.org/simple"
verify_ssl = true

[[source]]
name = "pytorch-cpu"
url = "{TORCH_CPU_INDEX}"
verify_ssl = true

[packages]
"""


def requirements(path: Path = REQUIREMENTS) -> list[tuple[str, str, str, str]]:
    """(name, extras, specifier, marker) of each requirement line; comments and blank lines skipped."""
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise SystemExit(f"{path.name}: options such as {line.split()[0]} have no Pipfile form; add them by hand")
        match = REQUIREMENT.match(line)
        if not match:
            raise SystemExit(f"{path.name}: cannot read the requirement {line!r}")
        name, extras, spec, marker = match.groups()
        found.append((name, extras or "", spec.replace(" ", ""), (marker or "").lstrip("; ").strip()))
    return found


def pipfile_text(reqs: list[tuple[str, str, str, str]]) -> str:
    """The Pipfile for these requirements (torch pinned to its +cpu build from PyTorch's index)."""
    lines = []
    for name, extras, spec, marker in reqs:
        fields = {}
        if name.lower() == "torch":
            pinned = re.fullmatch(r"==(\d+(?:\.\d+)*)", spec)
            if not pinned:
                raise SystemExit(f"torch must be pinned (==X.Y.Z) in requirements.txt, not {spec!r}")
            fields = {"version": f"=={pinned.group(1)}+cpu", "index": "pytorch-cpu"}
        elif extras or marker:
            fields = {"version": spec or "*"}
        if extras:
            fields["extras"] = [e.strip() for e in extras.strip("[]").split(",")]
        if marker:
            fields["markers"] = marker
        if fields:
            body = ", ".join(f"{k} = {_toml(v)}" for k, v in fields.items())
            lines.append(f"{name} = {{{body}}}")
        else:
            lines.append(f"{name} = {_toml(spec or '*')}")
    return HEADER + "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> int:
    """Check the Pipfile against requirements.txt, or rewrite it with --write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the Pipfile")
    args = parser.parse_args()
    wanted = pipfile_text(requirements())
    if args.write:
        PIPFILE.write_text(wanted, encoding="utf-8")
        print(f"wrote {PIPFILE.relative_to(ROOT)} from {REQUIREMENTS.name}")
        return 0
    current = PIPFILE.read_text(encoding="utf-8") if PIPFILE.exists() else ""
    if current != wanted:
        print(f"{PIPFILE.name} does not match {REQUIREMENTS.name}: run `python scripts/cloud_deps.py --write`",
              file=sys.stderr)
        return 1
    print(f"{PIPFILE.name} matches {REQUIREMENTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
