"""Every public definition in genlib/ has a docstring.

Public: a module-level or class-level function, method, class or property whose name does not
start with "_"; members of private classes are skipped.
"""
import ast
from pathlib import Path

GENLIB = Path(__file__).resolve().parent.parent / "genlib"


def _missing_docstrings(root: Path = GENLIB) -> list[str]:
    missing = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def visit(node: ast.AST, prefix: str = "", private: bool = False) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    hidden = private or child.name.startswith("_")
                    if not hidden and not ast.get_docstring(child):
                        missing.append(f"{path.relative_to(root.parent)}:{child.lineno} {prefix}{child.name}")
                    if isinstance(child, ast.ClassDef):
                        visit(child, f"{prefix}{child.name}.", hidden)

        visit(tree)
    return missing


def test_every_public_definition_has_a_docstring():
    missing = _missing_docstrings()
    assert not missing, f"{len(missing)} public definition(s) without a docstring:\n" + "\n".join(missing)
