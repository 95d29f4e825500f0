"""Data for ``tests/test_browser.py``. A package only so that its ``conftest.py`` is imported as
``browser.conftest`` and does not shadow ``tests/conftest.py`` (which the other tests import as ``conftest``)."""
