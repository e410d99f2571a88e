"""The cache root: DUBSTAGE_CACHE_DIR, XDG_CACHE_HOME, off."""

from renderer.cache import cache_dir


def test_cache_folders_under_the_configured_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DUBSTAGE_CACHE_DIR", str(tmp_path / "root"))
    assert cache_dir("hrtf") == tmp_path / "root" / "hrtf"
    assert (tmp_path / "root" / "hrtf").is_dir()


def test_default_root_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("DUBSTAGE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("jax") == tmp_path / "dubstage" / "jax"


def test_off_and_unwritable(tmp_path, monkeypatch):
    for setting in ("off", " OFF "):
        monkeypatch.setenv("DUBSTAGE_CACHE_DIR", setting)
        assert cache_dir("jax") is None
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DUBSTAGE_CACHE_DIR", str(blocker))
    assert cache_dir("jax") is None
