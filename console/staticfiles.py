"""plotly.js for the usage charts, served from the locked plotly package itself (no copy in
the repository, no CDN), as static/vendor/plotly.min.js. Only that one file: the package's
other data (datasets, a widget bundle) would slow collectstatic for nothing."""

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "plotly.min.js"


class PlotlyFinder(BaseFinder):
    served_as = f"vendor/{PLOTLY_JS}"

    def __init__(self, *args, **kwargs):
        import plotly

        self.storage = FileSystemStorage(location=Path(plotly.__file__).parent / "package_data")
        # collectstatic puts a file at storage.prefix/path.
        self.storage.prefix = "vendor"

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        match = self.storage.path(PLOTLY_JS) if path == self.served_as else None
        if find_all:
            return [match] if match else []
        return match

    def list(self, ignore_patterns):
        yield PLOTLY_JS, self.storage
