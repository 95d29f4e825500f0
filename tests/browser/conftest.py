"""``tests/browser/widgets.ipynb`` is data for ``tests/test_browser.py``, not an nbval test of its own."""

collect_ignore_glob = ["*.ipynb"]
