"""genlib.registry: families listed, clear errors for unknown names, duplicates refused."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import genlib
from genlib import registry
from genlib.model import GenerativeModel, ModelConfig
from genlib.registry import UnknownFamilyError, all_families, get_family, register

BUILTIN = {"ae", "dae", "vae", "cvae"}


@pytest.fixture
def core_registry_snapshot():
    """Restore the registry after a test that registers test-only families."""
    saved = dict(registry._FAMILIES)
    yield
    registry._FAMILIES.clear()
    registry._FAMILIES.update(saved)


def test_builtin_families_listed_sorted_and_named():
    found = all_families()
    assert BUILTIN <= set(found)
    assert list(found) == sorted(found)
    for name, cls in found.items():
        assert issubclass(cls, GenerativeModel)
        assert cls.family == name
        assert issubclass(cls.Config, ModelConfig)
        assert cls.description, f"{name} has no description"
        assert get_family(name) is cls


def test_families_returns_a_copy():
    found = all_families()
    found.pop("vae")
    assert "vae" in all_families()


def test_unknown_family_error_lists_known():
    with pytest.raises(UnknownFamilyError) as err:
        get_family("gann")
    msg = str(err.value)
    assert "'gann'" in msg
    assert "known families: " + ", ".join(sorted(all_families())) in msg
    assert not msg.startswith('"')  # not KeyError's quoted repr
    assert isinstance(err.value, KeyError)  # callers may catch it as a lookup error


def test_duplicate_registration_refused(core_registry_snapshot):
    class Impostor(GenerativeModel):
        pass

    with pytest.raises(ValueError, match="'vae' is already registered to VAE"):
        register("vae")(Impostor)
    assert get_family("vae").__name__ == "VAE"
    assert Impostor.family == ""  # not half-registered


def test_register_adds_a_family_and_same_class_twice_is_fine(core_registry_snapshot):
    class Toy(GenerativeModel):
        description = "toy"

    assert register("test-only-toy")(Toy) is Toy
    assert register("test-only-toy")(Toy) is Toy  # re-import of the same module: idempotent
    assert get_family("test-only-toy") is Toy and Toy.family == "test-only-toy"
    assert "test-only-toy" in all_families()


@pytest.mark.parametrize("first_import", [
    "import genlib; genlib.get_family('vae')",
    "from genlib.families.autoencoders import VAE; import genlib",
    "import genlib.families",
])
def test_the_families_package_is_found_whatever_the_import_order(first_import):
    # genlib.families is the package (no function of that name to shadow); all_families() lists what it registers.
    code = textwrap.dedent(f"""
        {first_import}
        import genlib, types
        from genlib import families
        assert isinstance(genlib.families, types.ModuleType) and families is genlib.families
        assert set(families.PACKAGES) >= {{'autoencoders', 'diffusion', 'gan'}}, families.PACKAGES
        assert {{'ae', 'dae', 'vae', 'cvae'}} <= set(genlib.all_families())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_public_entry_points():
    for name in genlib.__all__:
        assert hasattr(genlib, name), name
    assert callable(genlib.all_families)


def test_every_family_with_a_page_names_its_group_and_an_existing_page():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for name, cls in genlib.all_families().items():
        if not cls.page:  # allowed (the minimal family): shown on Compare only
            continue
        assert cls.group, f"{name} has a page but no group (Home groups models by it)"
        assert (root / cls.page).is_file(), f"{name}'s page {cls.page!r} does not exist"
        assert cls.page in (root / "streamlit_app.py").read_text(), f"{cls.page} is not in the app's navigation"
